/* global module */
/**
 * autocannon's setupRequest for GET /api/jobs/{id} when autocannon runs in worker threads (a function
 * cannot be handed to a worker, a file can): goes round the ids in BENCH_HTTP_GET_IDS, as the
 * in-thread run does.
 */
'use strict';
const ids = (process.env.BENCH_HTTP_GET_IDS ?? '').split(',');
let next = 0;
module.exports = (req) => ({ ...req, path: `/api/jobs/${ids[next++ % ids.length]}` });
