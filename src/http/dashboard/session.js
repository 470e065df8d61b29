// A microscope session's page, as streaming pre-processing tools show it: per exposure, defocus,
// astigmatism, CTF fit resolution and total drift over time, and thumbnails of the aligned sums, power
// spectra and CTF fits of the latest exposures. Kept current as exposures arrive and their jobs finish.
import { api, imageUrl } from './api.js';
import { lineChart } from './charts.js';
import { fmtTime, h, jobLink, progressBar, section, stateBadge, table } from './dom.js';

const THUMBS = 12;
const f1 = (v) => (v === null || v === undefined ? '' : v.toFixed(1));
const f2 = (v) => (v === null || v === undefined ? '' : v.toFixed(2));

function thumb(path, alt, kind, thumbnail = false) {
  if (!path) return h('span', { class: 'no-image' }, '—');
  const img = h('img', { alt, 'data-path': path, 'data-kind': kind, class: 'thumb', loading: 'lazy' });
  imageUrl(path, { thumbnail }).then(
    (url) => (img.src = url),
    (e) => img.replaceWith(h('span', { class: 'error', title: e.message }, 'image unavailable')),
  );
  return img;
}

export async function sessionView(id) {
  const v = await api(`/api/sessions/${encodeURIComponent(id)}`);
  const done = v.exposures.filter((e) => e.at !== null);
  const pt = (e, y) => ({ t: Date.parse(e.at), y, label: `${e.id} (${fmtTime(e.at)})` });
  const chart = (title, series, yFmt) => lineChart({ title, series, yFmt, zeroBased: false });
  const latest = v.exposures
    .filter((e) => e.images.alignedSum || e.images.powerSpectrum || e.images.ctfDiagnostic)
    .slice(-THUMBS)
    .reverse();
  const running =
    !['completed', 'failed', 'cancelled'].includes(v.job.state) ||
    v.exposures.some((e) => !['completed', 'failed', 'cancelled'].includes(e.state));
  return {
    title: `session ${v.sessionDir ?? id}`,
    running,
    nodes: [
      h('h1', {}, 'Session ', h('span', { class: 'mono' }, v.sessionDir ?? id)),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'import job'),
        h('dd', {}, jobLink(v.job._id), ' ', stateBadge(v.job.state)),
        h('dt', {}, 'output'),
        h('dd', { class: 'mono' }, v.outputDir ?? ''),
        h('dt', {}, 'exposures'),
        h(
          'dd',
          { id: 'session-counts' },
          `${v.counts.exposures} imported, ${v.counts.completed} processed, ${v.counts.failed} failed`,
        ),
      ),
      v.job.state === 'running' ? progressBar(v.job) : null,
      section(
        'Per exposure',
        h(
          'div',
          { class: 'charts session-charts' },
          chart(
            'Defocus (µm)',
            [
              {
                name: 'U',
                cls: 's-u',
                points: done.map((e) => pt(e, e.defocusU === null ? null : e.defocusU / 1e4)),
              },
              {
                name: 'V',
                cls: 's-v',
                points: done.map((e) => pt(e, e.defocusV === null ? null : e.defocusV / 1e4)),
              },
            ],
            f2,
          ),
          chart(
            'Astigmatism (Å)',
            [{ name: '|U−V|', cls: 's-astig', points: done.map((e) => pt(e, e.astigmatism)) }],
            (x) => String(Math.round(x)),
          ),
          chart(
            'CTF fit resolution (Å)',
            [{ name: 'fit', cls: 's-res', points: done.map((e) => pt(e, e.fitResolution)) }],
            f1,
          ),
          chart(
            'Total drift (px)',
            [{ name: 'drift', cls: 's-drift', points: done.map((e) => pt(e, e.totalDrift)) }],
            f1,
          ),
        ),
      ),
      section(
        'Latest exposures',
        h(
          'div',
          { class: 'thumbs' },
          latest.map((e) =>
            h(
              'figure',
              { class: 'thumb-card', 'data-exposure': e.id },
              h(
                'div',
                { class: 'thumb-pair' },
                thumb(e.images.alignedSum, `aligned sum of ${e.id}`, 'aligned-sum', true),
                thumb(e.images.powerSpectrum, `power spectrum of ${e.id}`, 'power-spectrum'),
                thumb(e.images.ctfDiagnostic, `CTF fit of ${e.id}`, 'ctf-fit'),
              ),
              h(
                'figcaption',
                {},
                e.id,
                h('br'),
                `${f2(e.defocusU === null ? null : e.defocusU / 1e4)} µm · ${f1(e.fitResolution)} Å`,
              ),
            ),
          ),
        ),
      ),
      section(
        'Exposures',
        table(
          [
            'exposure',
            'state',
            'defocus U (Å)',
            'defocus V (Å)',
            'angle (°)',
            'fit res. (Å)',
            'drift (px)',
            'jobs',
          ],
          v.exposures
            .slice()
            .reverse()
            .map((e) => ({
              attrs: { 'data-exposure': e.id },
              cells: [
                e.id,
                stateBadge(e.state),
                f1(e.defocusU),
                f1(e.defocusV),
                f1(e.astigmatismAngle),
                f2(e.fitResolution),
                f2(e.totalDrift),
                h(
                  'span',
                  {},
                  Object.entries(e.jobs).map(([step, j]) => [
                    jobLink(j.id, step),
                    j.error ? h('span', { class: 'error', title: j.error }, ' !') : null,
                    ' ',
                  ]),
                ),
              ],
            })),
          { class: 'exposures' },
        ),
      ),
    ],
  };
}
