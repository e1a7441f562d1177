// Soak: 64 concurrent streaming clients, a quarter aborting mid-stream. No crash, every completed answer
// valid, nothing left running afterwards; a client that goes away is cancelled at once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, metrics, sleep, MARKUP, SKIP } from './lib.mjs';

const CLIENTS = Number(process.env.DSV4_SOAK_CLIENTS || 64);
let srv, client;
before(async () => {
  if (SKIP) return;
  srv = await startServer(['--parallel', '8', '--alias', 'nano']);
  client = srv.client({ timeout: 300000 });
});
after(async () => {
  if (!srv) return;
  const { code, signal } = await srv.stop();
  assert.equal(signal, null, 'no crash');
  assert.equal(code, 0, 'clean shutdown');
});

// Waits until the scheduler has nothing active or queued; returns the last metrics.
async function drained(url, ms = 15000) {
  const end = Date.now() + ms;
  let m;
  while (Date.now() < end) {
    m = await metrics(url);
    if (m.dsv4_requests_active === 0 && m.dsv4_requests_queued === 0 && m.dsv4_http_streams_active === 0) return m;
    await sleep(50);
  }
  return m;
}

test(`${CLIENTS} concurrent streaming clients, some aborting`, { skip: SKIP }, async () => {
  const t0 = Date.now();
  const one = async (i) => {
    const abort = i % 4 === 3;
    const ac = new AbortController();
    const stream = await client.chat.completions.create({
      model: 'nano', max_tokens: 12 + (i % 5), stream: true, stream_options: { include_usage: true },
      thinking: { type: i % 2 ? 'enabled' : 'disabled' },
      messages: [{ role: 'user', content: `Tell of the generations of Adam, part ${i}.` }],
    }, { signal: ac.signal });
    let text = '', reasoning = '', finish = null, usage = null, chunks = 0;
    try {
      for await (const ch of stream) {
        chunks++;
        if (ch.usage) usage = ch.usage;
        for (const c of ch.choices) {
          text += c.delta.content ?? '';
          reasoning += c.delta.reasoning_content ?? '';
          finish = c.finish_reason ?? finish;
        }
        if (abort && chunks === 2) {
          // Leave the loop too: waiting on an aborted body can hang in undici when the abort races the
          // end of the stream.
          ac.abort();
          break;
        }
      }
    } catch (e) {
      if (!abort) throw e;
    }
    // The client's stream ends quietly on abort.
    if (ac.signal.aborted) return { aborted: true };
    return { aborted: false, text, reasoning, finish, usage, max: 12 + (i % 5) };
  };
  const results = await Promise.allSettled(Array.from({ length: CLIENTS }, (_, i) => one(i)));
  const secs = (Date.now() - t0) / 1000;
  const failed = results.filter((r) => r.status === 'rejected');
  assert.deepEqual(failed.map((f) => String(f.reason)), [], 'no client failed');
  const done = results.map((r) => r.value).filter((v) => !v.aborted);
  for (const v of done) {
    assert.ok(['stop', 'length'].includes(v.finish), `finish_reason ${v.finish}`);
    assert.ok(v.usage && v.usage.completion_tokens >= 1 && v.usage.completion_tokens <= v.max);
    assert.ok(!MARKUP.test(v.text) && !MARKUP.test(v.reasoning));
  }
  const tokens = done.reduce((s, v) => s + v.usage.completion_tokens, 0);
  console.log(`${CLIENTS} clients in ${secs.toFixed(1)} s: ${done.length} completed (${tokens} tokens), ` +
              `${results.length - done.length} aborted`);
  assert.ok(done.length >= CLIENTS / 2);
  const health = await fetch(`${srv.url}/health`);
  assert.equal(health.status, 200);
  const m = await drained(srv.url);
  assert.equal(m.dsv4_requests_active, 0);
  assert.equal(m.dsv4_requests_queued, 0);
  assert.equal(m.dsv4_http_streams_active, 0);
  assert.equal(m.dsv4_requests_failed_total, 0);
  console.log(`metrics: finished ${m.dsv4_requests_finished_total}, cancelled ${m.dsv4_requests_cancelled_total}, ` +
              `disconnects ${m.dsv4_http_client_disconnects_total}, ${m.dsv4_generation_tokens_per_second.toFixed(1)} tokens/s`);
});

test('a client that goes away is cancelled at once (streaming and not)', { skip: SKIP }, async () => {
  for (const stream of [true, false]) {
    const before = await metrics(srv.url);
    const ac = new AbortController();
    const req = client.chat.completions.create({
      model: 'nano', max_tokens: 3000, stream, thinking: { type: 'disabled' }, ignore_eos: true,
      messages: [{ role: 'user', content: 'Recite the begats.' }],
    }, { signal: ac.signal });
    const consume = (async () => {
      const r = await req;
      if (stream) for await (const _ of r) { /* read until aborted */ }
    })().catch(() => {});
    await sleep(400);
    ac.abort();
    await Promise.race([consume, sleep(5000)]);  // the server side is what is checked below
    const t = Date.now();
    const m = await drained(srv.url, 5000);
    const ms = Date.now() - t;
    assert.equal(m.dsv4_requests_active, 0, `stream=${stream}: still running`);
    assert.equal(m.dsv4_requests_cancelled_total, before.dsv4_requests_cancelled_total + 1);
    const generated = m.dsv4_generated_tokens_total - before.dsv4_generated_tokens_total;
    console.log(`stream=${stream}: cancelled ${ms} ms after the abort, after ${generated} tokens`);
    assert.ok(generated < 3000);
  }
});
