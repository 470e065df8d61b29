/**
 * Structural checks of OME-NGFF 0.4 image metadata, written from the specification's rules (no
 * package ships the 0.4 JSON schema to npm): multiscales with version, axes (2-5; 2 or 3 of type
 * space; ordered time, channel/custom, space; units from the UDUNITS list for space), datasets
 * ordered largest first, each with exactly one scale and at most one translation after it, with as
 * many values as axes.
 */
const SPACE_UNITS = new Set([
  'angstrom',
  'attometer',
  'centimeter',
  'decimeter',
  'exameter',
  'femtometer',
  'foot',
  'gigameter',
  'hectometer',
  'inch',
  'kilometer',
  'megameter',
  'meter',
  'micrometer',
  'mile',
  'millimeter',
  'nanometer',
  'parsec',
  'petameter',
  'picometer',
  'terameter',
  'yard',
  'yoctometer',
  'yottameter',
  'zeptometer',
  'zettameter',
]);

export function ngff04Problems(attrs: unknown, shapes: number[][]): string[] {
  const p: string[] = [];
  const ms = (attrs as { multiscales?: unknown }).multiscales;
  if (!Array.isArray(ms) || ms.length < 1) return ['multiscales must be a non-empty array'];
  const m = ms[0] as Record<string, unknown>;
  if (m.version !== '0.4') p.push(`version must be "0.4", got ${JSON.stringify(m.version)}`);
  const axes = m.axes as { name?: unknown; type?: unknown; unit?: unknown }[];
  if (!Array.isArray(axes) || axes.length < 2 || axes.length > 5)
    return [...p, 'axes must have 2 to 5 entries'];
  const names = axes.map((a) => a.name);
  if (names.some((n) => typeof n !== 'string') || new Set(names).size !== names.length)
    p.push('axis names must be unique strings');
  const space = axes.filter((a) => a.type === 'space');
  if (space.length < 2 || space.length > 3) p.push(`2 or 3 space axes required, got ${space.length}`);
  const rank = (t: unknown) => (t === 'time' ? 0 : t === 'space' ? 2 : 1);
  for (let i = 1; i < axes.length; i++) {
    if (rank(axes[i]!.type) < rank(axes[i - 1]!.type))
      p.push('axes must be ordered time, channel/custom, space');
  }
  if (axes.filter((a) => rank(a.type) === 1).length > 1) p.push('at most one channel or custom axis');
  for (const a of space)
    if (a.unit !== undefined && !SPACE_UNITS.has(String(a.unit)))
      p.push(`unit ${String(a.unit)} is not a space unit`);
  const datasets = m.datasets as {
    path?: unknown;
    coordinateTransformations?: { type: string; scale?: number[]; translation?: number[] }[];
  }[];
  if (!Array.isArray(datasets) || datasets.length < 1) return [...p, 'datasets must be non-empty'];
  if (datasets.length !== shapes.length) p.push(`${datasets.length} datasets but ${shapes.length} arrays`);
  datasets.forEach((d, i) => {
    if (typeof d.path !== 'string') p.push(`datasets[${i}].path must be a string`);
    const ct = d.coordinateTransformations ?? [];
    if (ct.length < 1 || ct[0]!.type !== 'scale')
      p.push(`datasets[${i}]: first transformation must be a scale`);
    if (ct.filter((t) => t.type === 'scale').length !== 1) p.push(`datasets[${i}]: exactly one scale`);
    if (ct.length > 2 || (ct[1] && ct[1].type !== 'translation'))
      p.push(`datasets[${i}]: at most one translation, after the scale`);
    for (const t of ct) {
      const v = t.scale ?? t.translation ?? [];
      if (v.length !== axes.length)
        p.push(`datasets[${i}]: ${t.type} has ${v.length} values for ${axes.length} axes`);
    }
    if (i > 0) {
      const a = shapes[i - 1]!;
      const b = shapes[i]!;
      if (b.some((n, k) => n > a[k]!)) p.push(`datasets[${i}] is larger than datasets[${i - 1}]`);
    }
  });
  return p;
}
