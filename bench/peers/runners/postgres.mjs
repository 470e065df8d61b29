/** Each PostgreSQL run gets its own database on the harness's server, dropped at the end. */
import pg from 'pg';

async function admin(serverUrl, sql) {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Creates database `name` (letters, digits, _ only) and returns its connection string. */
export async function createDatabase(serverUrl, name) {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`database name ${name} must match [a-z0-9_]+`);
  await admin(serverUrl, `CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.href;
}

export async function dropDatabase(serverUrl, name) {
  await admin(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/** One query on a short-lived connection: the first row's first column. */
export async function scalar(pool, sql, params = []) {
  const { rows } = await pool.query({ text: sql, values: params, rowMode: 'array' });
  return rows[0]?.[0];
}
