// The server holds against hostile clients (issue 13): JSON nested far too deep in every field that is
// walked recursively, a model that produces NaN, clients that trickle headers or bodies, more
// connections than the cap, and a burst of connections at once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, readdirSync, copyFileSync, readFileSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, postJson, SKIP, MODEL, sleep } from './lib.mjs';

// Connection limits small enough to reach in a test: 3 s deadlines, 8 workers, 64 connections.
const TIGHT = ['--timeout', '3', '--http-threads', '8', '--max-connections', '64', '--ctx', '128'];
let srv, tight;
before(async () => {
  if (SKIP) return;
  [srv, tight] = await Promise.all([startServer(['--ctx', '1024']), startServer(TIGHT)]);
});
after(async () => {
  for (const s of [srv, tight]) if (s) assert.equal((await s.stop()).code, 0);
});

function connect(url) {
  const u = new URL(url);
  return new Promise((ok, fail) => {
    const s = net.connect(Number(u.port), u.hostname, () => ok(s));
    s.once('error', fail);
  });
}

// Everything the server sends until it closes the connection.
function received(s) {
  let data = '';
  return new Promise((ok) => {
    s.on('data', (b) => (data += b));
    s.on('error', () => {});
    s.on('close', () => ok(data));
  });
}

async function rawGet(url, path = '/health') {
  const t0 = Date.now();
  const s = await connect(url);
  const done = received(s);
  s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const data = await done;
  return { status: Number(data.slice(9, 12)), data, ms: Date.now() - t0 };
}

// A client that sends `head` and then one more byte of `drip` every `everyMs` until the server closes.
async function trickler(url, head, drip, everyMs) {
  const s = await connect(url);
  const done = received(s);
  s.write(head);
  const timer = setInterval(() => {
    if (!s.destroyed) s.write(drip);
  }, everyMs);
  const data = await done;
  clearInterval(timer);
  return data;
}

const SLOW_HEAD = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n';

test('JSON nested 25,000 deep in every walked field is a 400 naming the field; the server lives', { skip: SKIP }, async () => {
  const D = '['.repeat(25000) + ']'.repeat(25000);
  const user = '{"role":"user","content":"hi"}';
  const fn = (p) => `{"type":"function","function":{"name":"f","parameters":${p}}}`;
  const cases = [
    ['/v1/chat/completions', `{"messages":[${user}],"tools":[${fn(D)}]}`, 'tools[0].function.parameters'],
    ['/v1/chat/completions',
      `{"messages":[${user},{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function",` +
      `"function":{"name":"f","arguments":${D}}}]},{"role":"tool","tool_call_id":"c1","content":"x"}]}`,
      'messages[1].tool_calls[0].function.arguments'],
    ['/v1/chat/completions', `{"messages":[${user}],"response_format":{"type":"json_schema",` +
      `"json_schema":{"name":"s","schema":${D}}}}`, 'response_format.json_schema.schema'],
    ['/v1/messages', `{"max_tokens":4,"messages":[${user}],"tools":[{"name":"f","input_schema":${D}}]}`,
      'tools[0].input_schema'],
    ['/v1/messages', `{"max_tokens":4,"messages":[${user},{"role":"assistant","content":[{"type":"tool_use",` +
      `"id":"t1","name":"f","input":${D}}]}]}`, 'messages[1].content[0].input'],
    ['/v1/messages/count_tokens', `{"messages":[${user}],"tools":[{"name":"f","input_schema":${D}}]}`,
      'tools[0].input_schema'],
    ['/v1/responses', `{"input":"hi","tools":[{"type":"function","name":"f","parameters":${D}}]}`,
      'tools[0].parameters'],
    ['/v1/responses', `{"input":"hi","text":{"format":{"type":"json_schema","name":"s","schema":${D}}}}`,
      'text.format.schema'],
    ['/v1/chat/render', `{"messages":[${user}],"tools":[${fn(D)}]}`, 'tools[0].function.parameters'],
  ];
  for (const [path, body, field] of cases) {
    const r = await postJson(`${srv.url}${path}`, body);
    assert.equal(r.status, 400, `${path} ${field}: ${r.text.slice(0, 300)}`);
    assert.ok(r.text.includes(field), `${path}: the error names ${field}: ${r.text.slice(0, 300)}`);
    assert.match(r.text, /nest/i);
  }
  // Nesting under the limit is served, and the prompt holds the whole schema.
  const ok = await postJson(`${srv.url}/v1/chat/render`,
    `{"messages":[${user}],"tools":[${fn(`{"type":"object","x":${'['.repeat(100) + ']'.repeat(100)}}`)}]}`);
  assert.equal(ok.status, 200, ok.text.slice(0, 300));
  assert.ok(ok.text.includes('['.repeat(100)));
  assert.equal((await rawGet(srv.url)).status, 200);
});

// A copy of the bundled model whose F32 tensor `name` is NaN: every logit is NaN.
function nanModel(name) {
  const dir = mkdtempSync(join(tmpdir(), 'dsv4-nan-'));
  for (const f of readdirSync(MODEL)) if (statSync(join(MODEL, f)).isFile()) copyFileSync(join(MODEL, f), join(dir, f));
  const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
  const shard = join(dir, index.weight_map[name]);
  const bytes = readFileSync(shard);
  const hlen = Number(bytes.readBigUInt64LE(0));
  const t = JSON.parse(bytes.subarray(8, 8 + hlen).toString('utf8'))[name];
  assert.equal(t.dtype, 'F32');
  for (let o = t.data_offsets[0]; o < t.data_offsets[1]; o += 4) bytes.writeFloatLE(NaN, 8 + hlen + o);
  writeFileSync(shard, bytes);
  return dir;
}

test('a model producing NaN fails its requests with 500 model_error; the server keeps serving', { skip: SKIP }, async () => {
  const dir = nanModel('hc_head_scale');
  const bad = await startServer(['--ctx', '128'], { model: dir });
  try {
    const chat = await postJson(`${bad.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 });
    assert.equal(chat.status, 500, chat.text);
    assert.equal(chat.json.error.type, 'model_error');
    assert.match(chat.json.error.message, /NaN|finite/);
    const msg = await postJson(`${bad.url}/v1/messages`, { max_tokens: 4, messages: [{ role: 'user', content: 'Hi' }] });
    assert.equal(msg.status, 500, msg.text);
    assert.equal(msg.json.type, 'error');
    const raw = await postJson(`${bad.url}/v1/completions`, { prompt: 'Hi', max_tokens: 4 });
    assert.equal(raw.status, 500, raw.text);
    assert.equal((await rawGet(bad.url)).status, 200);
  } finally {
    assert.equal((await bad.stop()).code, 0);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('clients trickling headers hold no worker: /health answers at once; they get 408 at the deadline', { skip: SKIP }, async () => {
  const t0 = Date.now();
  // Five times the workers, each sending a header line every 400 ms (a per-receive timeout never fires).
  const slow = Array.from({ length: 40 }, () => trickler(tight.url, SLOW_HEAD, 'X-Slow: 1\r\n', 400));
  await sleep(300);
  for (let i = 0; i < 6; ++i) {
    const r = await rawGet(tight.url);
    assert.equal(r.status, 200, r.data);
    assert.ok(r.ms < 1000, `/health took ${r.ms} ms while 40 clients trickle`);
    await sleep(300);
  }
  const answers = await Promise.all(slow);
  for (const a of answers) assert.match(a, /^HTTP\/1\.1 408 /);
  const took = Date.now() - t0;
  assert.ok(took >= 2900 && took < 7000, `the header deadline is 3 s; the tricklers lasted ${took} ms`);
});

test('a body trickled past --timeout gets 408; requests wait for a worker meanwhile, then are served', { skip: SKIP }, async () => {
  // Eight clients (all the workers) send headers, then their bodies a byte every 400 ms.
  const head = `${SLOW_HEAD}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"messages":`;
  const t0 = Date.now();
  const slow = Array.from({ length: 8 }, () => trickler(tight.url, head, ' ', 400));
  await sleep(1000);
  const r = await rawGet(tight.url);
  assert.equal(r.status, 200, r.data);
  assert.ok(Date.now() - t0 >= 2800, 'the request waited for a worker held by a slow body');
  const answers = await Promise.all(slow);
  for (const a of answers) {
    assert.match(a, /^HTTP\/1\.1 408 /);
    assert.match(a, /did not arrive within 3 s/);
  }
  assert.ok(Date.now() - t0 < 7000);
});

test('beyond --max-connections a client gets 503 with Retry-After; idle connections make room', { skip: SKIP }, async () => {
  const slow = Array.from({ length: 64 }, () => trickler(tight.url, SLOW_HEAD, 'X-Slow: 1\r\n', 400));
  await sleep(500);
  const full = await rawGet(tight.url);
  assert.equal(full.status, 503, full.data);
  assert.match(full.data, /Retry-After: 1/i);
  assert.match(full.data, /server_busy/);
  await Promise.all(slow);
  await sleep(1200);  // the 408'd connections drain for a second
  assert.equal((await rawGet(tight.url)).status, 200);

  // 64 connections that never send anything: a new request closes one of them instead of failing.
  const idle = await Promise.all(Array.from({ length: 64 }, () => connect(tight.url)));
  const closed = idle.map((s) => received(s));
  await sleep(300);
  assert.equal((await rawGet(tight.url)).status, 200);
  for (const s of idle) s.destroy();
  await Promise.all(closed);
  const text = await (await fetch(`${tight.url}/metrics`)).text();
  assert.match(text, /dsv4_http_rejected_total [1-9]/);
  assert.match(text, /dsv4_http_timeouts_total [1-9]/);
});

test('a burst of 200 connections is served without resets or SYN retries', { skip: SKIP }, async () => {
  const t0 = Date.now();
  const all = await Promise.all(Array.from({ length: 200 }, () => rawGet(srv.url)));
  const took = Date.now() - t0;
  for (const r of all) assert.equal(r.status, 200, r.data);
  // A dropped SYN is retried after 1 s: a backlog of 5 shows up here.
  assert.ok(took < 1000, `200 connections took ${took} ms`);
});
