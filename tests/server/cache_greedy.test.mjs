// Prefix cache through the API (cached_tokens, time to first token), SSE keep-alives during a long
// prefill, and greedy answers equal to `dsv4 run` for the same prompt.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, postJson, parseSse, execFileP, BIN, MODEL, SKIP } from './lib.mjs';

let srv, client;
before(async () => {
  if (SKIP) return;
  srv = await startServer(['--alias', 'nano', '--keep-alive', '0.1']);
  client = srv.client();
});
after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  assert.equal(code, 0);
});

const LONG = 'And Adam lived an hundred and thirty years, and begat a son in his own likeness, after his image; ' +
  'and called his name Seth. ';

// Streams one request; returns seconds to the first chunk and the usage.
async function timed(content) {
  const t0 = performance.now();
  let ttft = null, usage = null, text = '';
  const messages = typeof content === 'string' ? [{ role: 'user', content }] : content;
  const stream = await client.chat.completions.create({
    model: 'nano', messages, max_tokens: 4, temperature: 0, stream: true,
    stream_options: { include_usage: true }, thinking: { type: 'disabled' },
  });
  for await (const ch of stream) {
    if (ttft === null && ch.choices.length) ttft = (performance.now() - t0) / 1000;
    if (ch.usage) usage = ch.usage;
    text += ch.choices[0]?.delta?.content ?? '';
  }
  return { ttft, usage, text };
}

test('prefix cache: the same long prompt twice', { skip: SKIP }, async () => {
  const prompt = LONG.repeat(40) + 'Who was the son of Adam?';
  const a = await timed(prompt);
  const b = await timed(prompt);
  assert.equal(a.usage.prompt_tokens, b.usage.prompt_tokens);
  assert.ok(b.usage.prompt_tokens_details.cached_tokens > 0, 'second request reuses the prefix');
  assert.ok(b.usage.prompt_tokens_details.cached_tokens >= b.usage.prompt_tokens - 1);
  console.log(`prompt ${a.usage.prompt_tokens} tokens: first token after ${a.ttft.toFixed(3)} s, then ` +
              `${b.ttft.toFixed(3)} s with ${b.usage.prompt_tokens_details.cached_tokens} cached ` +
              `(${(a.ttft / b.ttft).toFixed(1)}x faster)`);
  // The next turn of the conversation (a stateless client resends it all) reuses the first turn.
  const c = await timed([{ role: 'user', content: prompt }, { role: 'assistant', content: b.text },
                         { role: 'user', content: 'And then?' }]);
  assert.ok(c.usage.prompt_tokens_details.cached_tokens >= a.usage.prompt_tokens - 1);
});

test('SSE keep-alive comments while a long prompt is prefilled', { skip: SKIP }, async () => {
  const prompt = LONG.repeat(50) + 'Unique tail ' + Date.now();
  const r = await postJson(`${srv.url}/v1/chat/completions`, {
    messages: [{ role: 'user', content: 'Keep-alive test. ' + prompt }], max_tokens: 2, stream: true,
  });
  const evs = parseSse(r.text);
  const comments = evs.filter((e) => e.comment === 'keep-alive').length;
  console.log(`keep-alive comments: ${comments}`);
  assert.ok(comments >= 1);
  assert.equal(evs.at(-1).data, '[DONE]');
});

async function cli(prompt, n, think) {
  const args = ['run', '-m', MODEL, '-p', prompt, '--temp', '0', '-n', String(n)];
  if (think) args.push('--think');
  const { stdout } = await execFileP(BIN, args, { maxBuffer: 16 << 20 });
  return stdout;
}

test('greedy answers equal `dsv4 run`', { skip: SKIP }, async () => {
  for (const [prompt, n] of [['Who begat Enos?', 24], ['And the LORD spake unto Moses, saying', 40]]) {
    const expect = await cli(prompt, n, false);
    const r = await client.chat.completions.create({
      model: 'nano', messages: [{ role: 'user', content: prompt }], max_tokens: n, temperature: 0, thinking: { type: 'disabled' },
    });
    assert.equal(r.choices[0].message.content + '\n', expect, `chat mode: ${prompt}`);
    // Thinking mode: `run --think` prints the reasoning, a newline, then the answer.
    const t = await cli(prompt, n, true);
    const m = (await client.chat.completions.create({
      model: 'nano', messages: [{ role: 'user', content: prompt }], max_tokens: n, temperature: 0, thinking: { type: 'enabled' },
    })).choices[0].message;
    const content = m.content ?? '';
    assert.equal(m.reasoning_content + (m.reasoning_content && content ? '\n' : '') + content + '\n', t, `thinking: ${prompt}`);
  }
});
