// Ember's web UI: draws the page its path names from the REST API (/api/v1/*) and polls it
// every 2 seconds. Every value from the server goes into the page as text (never as HTML).
'use strict';

const REFRESH_MS = 2000;
const DASHBOARD_REFRESH_MS = 15000;
const API = '/api/v1';

// ---- small helpers --------------------------------------------------------------------------

/** An element: el('td', {class: 'num'}, 'text', child, …). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function get(path) {
  const r = await fetch(path, { headers: { Accept: 'application/json' } });
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const message = body && body.error ? body.error : `${r.status} ${r.statusText}`;
    const err = new Error(message);
    err.status = r.status;
    throw err;
  }
  return body;
}

function table(id, headers, rows) {
  return el('table', { id },
    el('thead', {}, el('tr', {}, headers.map(h => el('th', { class: h.num ? 'num' : null }, h.label || h)))),
    el('tbody', {}, rows));
}

function state(s) { return el('span', { class: `state state-${s}`, 'data-state': s }, s); }
function num(v) { return el('td', { class: 'num' }, v === null || v === undefined ? '–' : fmt(v)); }
function fmt(v) {
  if (typeof v === 'number') return Number.isInteger(v) ? v.toLocaleString('en-US') : v.toLocaleString('en-US', { maximumFractionDigits: 1 });
  return String(v);
}
function ms(v) {
  if (v === null || v === undefined) return '–';
  if (v < 1000) return `${v} ms`;
  if (v < 60000) return `${(v / 1000).toFixed(1)} s`;
  return `${Math.floor(v / 60000)} min ${Math.round((v % 60000) / 1000)} s`;
}
function bytes(v) {
  if (v === null || v === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}
function money(v) { return Number(v).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 }); }
function time(t) { return t ? t.replace('T', ' ').replace(/\.\d+Z$|Z$/, '') : '–'; }
function card(label, value, id, title) {
  return el('div', { class: 'card', id, title }, el('div', { class: 'label' }, label), el('div', { class: 'value' }, value));
}

// ---- charts (uPlot) -------------------------------------------------------------------------

/** A chart box: series are [{label, values}], x is Unix seconds or plain numbers. */
function chart(id, title, x, series, opts) {
  const box = el('div', { class: 'chart', id, 'data-points': String(x.length) }, el('h3', {}, title));
  const width = (opts && opts.width) || 420;
  const data = [x, ...series.map(s => s.values)];
  const colors = ['#e4572e', '#2563eb', '#059669', '#9333ea'];
  const plot = new uPlot({
    width, height: 200,
    scales: { x: { time: !(opts && opts.plainX) } },
    series: [{ label: (opts && opts.xLabel) || 'time' },
      ...series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 2, points: { show: x.length < 60 } }))],
    axes: [{}, { size: 70 }],
  }, data, box);
  box.plot = plot;
  return box;
}

// ---- pages ----------------------------------------------------------------------------------

const pages = {
  async jobs(main, params) {
    const filter = params.get('state') || '';
    const jobs = await get(`${API}/jobs${filter ? `?state=${encodeURIComponent(filter)}` : ''}`);
    const select = el('select', { id: 'state-filter', onchange: e => navigate(`/ui/jobs${e.target.value ? `?state=${e.target.value}` : ''}`) },
      ['', 'queued', 'running', 'succeeded', 'failed', 'cancelled'].map(s => {
        const o = el('option', { value: s }, s || 'all states');
        if (s === filter) o.selected = true;
        return o;
      }));
    main.replaceChildren(
      el('h1', {}, 'Jobs'),
      el('form', { class: 'filters', onsubmit: e => e.preventDefault() }, el('label', {}, 'State ', select)),
      jobs.length === 0 ? el('p', { class: 'muted', id: 'no-jobs' }, 'No jobs yet: submit one with `ember submit jobs/<job> --scheduler HOST:PORT`.') :
        table('jobs-table', ['Id', 'Name', 'State', 'Submitted', 'Duration', { label: 'Stages', num: true }, { label: 'Rows written', num: true }],
          jobs.map(j => el('tr', { 'data-id': j.id, 'data-state': j.state },
            el('td', {}, el('a', { href: `/ui/jobs/${encodeURIComponent(j.id)}` }, j.id)),
            el('td', {}, j.name), el('td', {}, state(j.state)), el('td', {}, time(j.submitted_at)),
            el('td', {}, ms(j.duration_ms)), el('td', { class: 'num' }, `${j.stages_done}/${j.stages_total}`),
            num(j.rows_written)))));
  },

  async job(main, params, id) {
    const j = await get(`${API}/jobs/${encodeURIComponent(id)}`);
    const parts = [
      el('h1', {}, 'Job ', el('span', { id: 'job-name' }, j.name), ' ', state(j.state)),
      el('div', { class: 'cards' },
        card('Id', j.id), card('Submitted', time(j.submitted_at)), card('Duration', ms(j.duration_ms)),
        card('Stages', `${j.stages_done}/${j.stages_total}`), card('Output', j.output)),
    ];
    if (j.error) parts.push(el('h2', {}, 'Error'), el('div', { class: 'error', id: 'job-error' }, j.error));
    if (j.report) {
      const r = j.report;
      const quarantined = Object.entries(r.quarantined_by_reason || {}).map(([k, v]) => `${k}: ${v}`).join(', ');
      parts.push(el('div', { class: 'cards', id: 'job-report' },
        card('Rows read', fmt(r.rows.read), 'card-rows-read'), card('Rows written', fmt(r.rows.written), 'card-rows-written'),
        card('Quarantined', quarantined || '0', 'card-quarantined'), card('Partitions written', fmt(r.partitions.written.length)),
        card('Output size', bytes(r.bytes)),
        ...(r.table_version == null ? [] : [card('Table version', `v${r.table_version}`, 'card-table-version',
          `Delta table version this run committed; over Flight SQL: SELECT … FROM "${j.name}@v${r.table_version}"`)])));
    }
    parts.push(el('h2', {}, 'Stages'));
    if (!j.steps.length) parts.push(el('p', { class: 'muted' }, 'No distributed step yet.'));
    for (const step of j.steps) {
      parts.push(el('h3', {}, `Step: ${step.step} `, state(step.state), el('span', { class: 'muted' }, ` Ballista job ${step.ballista_job_id}, ${step.stages_done}/${step.stages_total} stages`)));
      parts.push(table(null, ['Stage', 'State', { label: 'Tasks', num: true }, { label: 'Done', num: true }, { label: 'Running', num: true }, { label: 'Failed', num: true }, { label: 'Rows in', num: true }, { label: 'Rows out', num: true }, 'Plan'],
        step.stages.map(s => el('tr', { class: 'stage', 'data-state': s.state },
          el('td', {}, s.stage_id), el('td', {}, state(s.state)), num(s.tasks), num(s.tasks_done), num(s.tasks_running), num(s.tasks_failed),
          num(s.input_rows), num(s.output_rows),
          el('td', {}, s.plan ? el('details', {}, el('summary', {}, 'physical plan'), el('pre', { class: 'plan' }, s.plan)) : '–')))));
    }
    main.replaceChildren(...parts);
    return j.state === 'succeeded' || j.state === 'failed' || j.state === 'cancelled' ? 'final' : null;
  },

  async executors(main) {
    const list = await get(`${API}/executors`);
    main.replaceChildren(
      el('h1', {}, 'Executors'),
      list.length === 0 ? el('p', { class: 'muted', id: 'no-executors' }, 'No executor has registered.') :
        table('executors-table', ['Id', 'Address', 'State', { label: 'Slots used / total', num: true }, { label: 'Tasks done', num: true }, { label: 'Tasks failed', num: true }, { label: 'Memory', num: true }, 'Last heartbeat'],
          list.map(e => el('tr', { 'data-id': e.id, 'data-state': e.state },
            el('td', {}, e.id), el('td', {}, `${e.host}:${e.port}`), el('td', {}, state(e.state)),
            el('td', { class: 'num' }, `${e.tasks_running === null ? '–' : e.tasks_running}/${e.task_slots}`),
            num(e.tasks_succeeded), num(e.tasks_failed), el('td', { class: 'num' }, bytes(e.memory_bytes)),
            el('td', {}, time(e.last_heartbeat))))));
  },

  async streaming(main) {
    const list = await get(`${API}/streams`);
    const lag = s => s.last ? s.last.partitions.reduce((a, p) => a + p.lag, 0) : null;
    main.replaceChildren(
      el('h1', {}, 'Streaming'),
      list.length === 0 ? el('p', { class: 'muted', id: 'no-streams' }, 'No stream has reported: streams submitted with `ember submit` report here.') :
        table('streams-table', ['Name', 'State', 'Started', { label: 'Batches', num: true }, { label: 'Input rate (events/s)', num: true }, { label: 'Process rate (events/s)', num: true }, { label: 'Batch duration', num: true }, 'Watermark', { label: 'Lag (messages)', num: true }],
          list.map(s => el('tr', { 'data-id': s.id, 'data-state': s.state },
            el('td', {}, el('a', { href: `/ui/streaming/${encodeURIComponent(s.id)}` }, s.name)), el('td', {}, state(s.state)),
            el('td', {}, time(s.started_at)), num(s.batches), num(s.last && s.last.input_rows_per_second),
            num(s.last && s.last.processed_rows_per_second), el('td', { class: 'num' }, s.last ? ms(s.last.duration_ms) : '–'),
            el('td', {}, time(s.last && s.last.watermark)), num(lag(s))))));
  },

  async stream(main, params, id) {
    const s = await get(`${API}/streams/${encodeURIComponent(id)}`);
    const recent = s.recent;
    const x = recent.map(p => Date.parse(p.timestamp) / 1000);
    const last = s.last;
    const parts = [
      el('h1', {}, 'Stream ', el('span', { id: 'stream-name' }, s.name), ' ', state(s.state)),
      el('div', { class: 'cards' },
        card('Batches', fmt(s.batches), 'card-batches'), card('Watermark', time(last && last.watermark), 'card-watermark'),
        card('Input rate', last ? `${fmt(last.input_rows_per_second)} events/s` : '–'),
        card('Process rate', last ? `${fmt(last.processed_rows_per_second)} events/s` : '–'),
        card('Output', s.output)),
    ];
    if (s.error) parts.push(el('div', { class: 'error', id: 'stream-error' }, s.error));
    parts.push(el('div', { class: 'charts' },
      chart('chart-rates', 'Input and process rate (events/s)', x, [
        { label: 'input', values: recent.map(p => p.input_rows_per_second) },
        { label: 'process', values: recent.map(p => p.processed_rows_per_second) }]),
      chart('chart-duration', 'Batch duration (ms)', x, [{ label: 'duration', values: recent.map(p => p.duration_ms) }]),
      chart('chart-rows', 'Input rows per batch', x, [{ label: 'rows', values: recent.map(p => p.records) }]),
      chart('chart-lag', 'Kafka lag (messages)', x, [{ label: 'lag', values: recent.map(p => p.partitions.reduce((a, q) => a + q.lag, 0)) }])));
    if (last) {
      parts.push(el('h2', {}, `Kafka lag per partition (topic ${last.topic})`),
        table('lag-table', [{ label: 'Partition', num: true }, { label: 'Read up to', num: true }, { label: 'Latest offset', num: true }, { label: 'Lag', num: true }],
          last.partitions.map(p => el('tr', {}, num(p.partition), num(p.end_offset), num(p.latest_offset), num(p.lag)))));
    }
    parts.push(el('h2', {}, 'Last batches'),
      table('batches-table', [{ label: 'Batch', num: true }, 'Committed', 'Offsets', { label: 'Rows', num: true }, { label: 'Events', num: true }, { label: 'Quarantined', num: true }, { label: 'Windows out', num: true }, { label: 'Duration', num: true }],
        recent.slice().reverse().slice(0, 20).map(p => el('tr', { 'data-batch': p.batch_id },
          num(p.batch_id), el('td', {}, time(p.timestamp)),
          el('td', {}, p.partitions.map(q => `${q.partition}: ${q.start_offset}–${q.end_offset}`).join(', ')),
          num(p.records), num(p.events), num(Object.values(p.quarantined || {}).reduce((a, n) => a + n, 0)), num(p.rows_written), el('td', { class: 'num' }, ms(p.duration_ms))))));
    main.replaceChildren(...parts);
  },

  async dashboard(main, params) {
    const info = await get(`${API}/info`);
    const from = params.get('from') || '';
    const to = params.get('to') || '';
    const range = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    const attempt = p => p.then(v => ({ v }), e => ({ e }));
    const [daily, top, windows] = await Promise.all([
      attempt(get(`${API}/dashboard/daily?${range}`)),
      attempt(get(`${API}/dashboard/top-products?${range}&limit=10`)),
      attempt(get(`${API}/dashboard/windows?limit=96`)),
    ]);
    const input = (name, value) => el('input', { type: 'date', name, value, id: `range-${name}` });
    const form = el('form', { class: 'filters', id: 'range', onsubmit: e => {
      e.preventDefault();
      const f = new FormData(e.target);
      navigate(`/ui/dashboard?from=${f.get('from') || ''}&to=${f.get('to') || ''}`);
    } }, el('label', {}, 'From ', input('from', from)), el('label', {}, 'To ', input('to', to)), el('button', { type: 'submit' }, 'Show'));
    const day = d => Date.parse(`${d}T00:00:00Z`) / 1000;
    const parts = [el('h1', {}, 'Revenue'), form];
    parts.push(el('h2', {}, `Daily net revenue (${info.daily_table})`));
    if (daily.e) parts.push(el('p', { class: 'muted', id: 'daily-missing' }, daily.e.message));
    else {
      const total = daily.v.reduce((a, r) => a + Number(r.net_revenue), 0);
      parts.push(el('div', { class: 'cards' }, card('Days', fmt(daily.v.length), 'card-days'), card('Net revenue', money(total), 'card-net')),
        chart('chart-daily', 'Net revenue per day', daily.v.map(r => day(r.order_date)), [{ label: 'net revenue', values: daily.v.map(r => Number(r.net_revenue)) }], { width: 900 }));
    }
    parts.push(el('h2', {}, 'Top products'));
    if (top.e) parts.push(el('p', { class: 'muted' }, top.e.message));
    else parts.push(table('top-products', [{ label: '#', num: true }, 'Product', 'Name', { label: 'Net revenue', num: true }, { label: 'Units sold', num: true }],
      top.v.map((r, i) => el('tr', { 'data-product': r.product_id }, num(i + 1), el('td', {}, r.product_id), el('td', {}, r.product_name || ''),
        el('td', { class: 'num' }, money(r.net_revenue)), num(r.units_sold)))));
    parts.push(el('h2', {}, `Live window revenue (${info.windows_table})`));
    if (windows.e) parts.push(el('p', { class: 'muted', id: 'windows-missing' }, windows.e.message));
    else parts.push(chart('chart-windows', 'Net revenue per 1-hour window (by window start)', windows.v.map(r => Date.parse(r.window_start.replace(' ', 'T').replace(/Z?$/, 'Z')) / 1000),
      [{ label: 'net revenue', values: windows.v.map(r => Number(r.net_revenue)) }], { width: 900 }));
    main.replaceChildren(...parts);
    // Its queries are jobs on the cluster: refresh less often, and not while the range is edited.
    return DASHBOARD_REFRESH_MS;
  },
};

// ---- routing and refresh --------------------------------------------------------------------

let timer = null;
let mode = null;

function route() {
  const path = location.pathname.replace(/\/+$/, '');
  const params = new URLSearchParams(location.search);
  let m;
  if ((m = path.match(/^\/ui\/jobs\/(.+)$/))) return ['jobs', () => pages.job(main(), params, decodeURIComponent(m[1]))];
  if ((m = path.match(/^\/ui\/streaming\/(.+)$/))) return ['streaming', () => pages.stream(main(), params, decodeURIComponent(m[1]))];
  const page = (path.match(/^\/ui\/(\w+)/) || [])[1] || 'jobs';
  if (!pages[page] || page === 'job' || page === 'stream') return [page, async () => { main().replaceChildren(el('h1', {}, 'Not found'), el('p', {}, `No page ${path}.`)); return 'final'; }];
  return [page, () => pages[page](main(), params)];
}

function main() { return document.getElementById('main'); }

function navigate(url) {
  history.pushState(null, '', url);
  refresh();
}

async function refresh() {
  clearTimeout(timer);
  if (mode === null) {
    try { mode = (await get(`${API}/info`)).mode; } catch (e) { mode = 'scheduler'; }
    for (const a of document.querySelectorAll('nav a[data-mode]')) a.hidden = a.dataset.mode !== mode;
  }
  const [page, draw] = route();
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === page);
  const status = document.getElementById('status');
  let again = REFRESH_MS;
  try {
    const next = await draw();
    again = next === 'final' ? 0 : (typeof next === 'number' ? next : REFRESH_MS);
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = 'true';
  } catch (e) {
    main().replaceChildren(el('h1', {}, 'Error'), el('div', { class: 'error', id: 'page-error' }, e.message));
    status.textContent = '';
    document.body.dataset.loaded = 'true';
  }
  // A page that may change (a running job, a stream, the executors) polls again.
  if (again) timer = setTimeout(() => {
    const active = document.activeElement;
    if (active && active.tagName === 'INPUT') { timer = setTimeout(refresh, again); return; }
    refresh();
  }, again);
}

window.addEventListener('popstate', refresh);
document.addEventListener('click', e => {
  const a = e.target.closest('a');
  if (a && a.origin === location.origin && a.pathname.startsWith('/ui/') && !e.ctrlKey && !e.metaKey) {
    e.preventDefault();
    navigate(a.pathname + a.search);
  }
});
refresh();
