// OpenAI routes through the official client: chat (plain, streamed, thinking), completions, responses,
// logprobs, stop strings, seeds, tokenize.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, postJson, parseSse, MARKUP, MODEL_NAME, SKIP } from './lib.mjs';

let srv, client;
before(async () => {
  if (SKIP) return;
  srv = await startServer(['--parallel', '4', '--alias', 'nano', '--ctx', '4096']);
  client = srv.client();
});
after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  assert.equal(code, 0, 'clean shutdown');
});

const user = (content) => [{ role: 'user', content }];
const checkUsage = (u) => {
  assert.ok(u.prompt_tokens > 0);
  assert.ok(u.completion_tokens > 0);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(typeof u.prompt_tokens_details.cached_tokens, 'number');
};

test('models: alias and folder name', { skip: SKIP }, async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), ['nano']);
  // Any of the accepted names works as `model`.
  for (const model of ['nano', MODEL_NAME]) {
    const r = await client.chat.completions.create({ model, messages: user('Hi'), max_tokens: 2 });
    assert.equal(r.model, 'nano');
  }
});

test('chat: plain', { skip: SKIP }, async () => {
  const r = await client.chat.completions.create({
    model: 'nano', messages: [{ role: 'system', content: 'Be brief.' }, ...user('Who begat Enos?')],
    max_tokens: 12, thinking: { type: 'disabled' },
  });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(!MARKUP.test(c.message.content));
  assert.ok(['stop', 'length'].includes(c.finish_reason));
  checkUsage(r.usage);
  assert.ok(r.usage.completion_tokens <= 12);
});

test('chat: streamed, with usage', { skip: SKIP }, async () => {
  const stream = await client.chat.completions.create({
    model: 'nano', messages: user('And the LORD said'), max_tokens: 10, stream: true,
    stream_options: { include_usage: true }, thinking: { type: 'disabled' }, temperature: 0,
  });
  let text = '', finish = null, usage = null, chunks = 0, role = null;
  for await (const ch of stream) {
    chunks++;
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      role ??= c.delta.role;
      text += c.delta.content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  assert.equal(role, 'assistant');
  assert.ok(chunks >= 2);
  assert.ok(['stop', 'length'].includes(finish));
  checkUsage(usage);
  // The same request without streaming gives the same greedy text.
  const r = await client.chat.completions.create({
    model: 'nano', messages: user('And the LORD said'), max_tokens: 10, thinking: { type: 'disabled' }, temperature: 0,
  });
  assert.equal(r.choices[0].message.content, text);
});

test('chat: thinking mode separates reasoning from content', { skip: SKIP }, async () => {
  const r = await client.chat.completions.create({
    model: 'nano', messages: user('Why is the sky blue?'), max_tokens: 24, reasoning_effort: 'high',
  });
  const m = r.choices[0].message;
  assert.equal(typeof m.reasoning_content, 'string');
  assert.ok(!MARKUP.test(m.reasoning_content) && !MARKUP.test(m.content ?? ''));
  assert.ok(r.usage.completion_tokens_details.reasoning_tokens > 0);
  // Streamed: reasoning deltas come first, content only after them.
  const stream = await client.chat.completions.create({
    model: 'nano', messages: user('Why is the sky blue?'), max_tokens: 24, stream: true,
    chat_template_kwargs: { thinking: true },
  });
  let sawContent = false, reasoning = '';
  for await (const ch of stream) {
    const d = ch.choices[0]?.delta ?? {};
    if (d.reasoning_content) {
      assert.ok(!sawContent, 'reasoning after content');
      reasoning += d.reasoning_content;
    }
    if (d.content) sawContent = true;
  }
  assert.ok(!MARKUP.test(reasoning));
  // Chat mode has no reasoning field at all.
  const off = await client.chat.completions.create({
    model: 'nano', messages: user('Hi'), max_tokens: 4, thinking: { type: 'disabled' },
  });
  assert.equal(off.choices[0].message.reasoning_content, undefined);
});

test('render: thinking controls reach the prompt', { skip: SKIP }, async () => {
  const render = async (extra) =>
    (await postJson(`${srv.url}/v1/chat/render`, { messages: user('Hi'), ...extra })).json;
  const end = (p) => p.prompt;
  assert.ok(end(await render({})).endsWith('<｜Assistant｜><think>'), 'thinking by default');
  assert.ok(end(await render({ thinking: { type: 'disabled' } })).endsWith('<｜Assistant｜></think>'));
  assert.ok(end(await render({ chat_template_kwargs: { thinking: false } })).endsWith('</think>'));
  assert.ok(end(await render({ reasoning_effort: 'none' })).endsWith('</think>'));
  const max = await render({ reasoning_effort: 'max' });
  assert.ok(max.prompt.startsWith('<｜begin▁of▁sentence｜>Reasoning Effort: Absolute maximum'));
  assert.equal(max.reasoning_effort, 'max');
  const bad = await postJson(`${srv.url}/v1/chat/render`, { messages: user('Hi'), reasoning_effort: 'huge' });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, 'reasoning_effort');
});

test('chat: logprobs', { skip: SKIP }, async () => {
  const r = await client.chat.completions.create({
    model: 'nano', messages: user('In the beginning'), max_tokens: 6, logprobs: true, top_logprobs: 3,
    thinking: { type: 'disabled' },
  });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, r.usage.completion_tokens);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    for (let i = 1; i < 3; i++) assert.ok(t.top_logprobs[i - 1].logprob >= t.top_logprobs[i].logprob);
    assert.deepEqual(Buffer.from(t.bytes).toString('latin1').length, t.bytes.length);
  }
  // Streamed logprobs add up to the same count.
  const stream = await client.chat.completions.create({
    model: 'nano', messages: user('In the beginning'), max_tokens: 6, logprobs: true, stream: true,
    stream_options: { include_usage: true }, thinking: { type: 'disabled' },
  });
  let n = 0, usage;
  for await (const ch of stream) {
    n += ch.choices[0]?.logprobs?.content?.length ?? 0;
    if (ch.usage) usage = ch.usage;
  }
  assert.equal(n, usage.completion_tokens);
});

test('chat: stop strings and seeds', { skip: SKIP }, async () => {
  const base = { model: 'nano', messages: user('And God said'), max_tokens: 16, temperature: 0, thinking: { type: 'disabled' } };
  const full = (await client.chat.completions.create(base)).choices[0].message.content;
  // Stop on a piece of the greedy answer: the text ends right before it.
  const at = Math.floor(full.length / 2);
  const stop = full.slice(at, at + 3);
  if (stop.trim().length === 3) {
    const r = await client.chat.completions.create({ ...base, stop: [stop] });
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.choices[0].message.content, full.slice(0, full.indexOf(stop)));
  }
  // Sampling with a seed repeats itself.
  const seeded = { ...base, temperature: 1, seed: 1234 };
  const a = (await client.chat.completions.create(seeded)).choices[0].message.content;
  const b = (await client.chat.completions.create(seeded)).choices[0].message.content;
  assert.equal(a, b);
});

test('completions: text, token ids, echo, stream, logprobs', { skip: SKIP }, async () => {
  const r = await client.completions.create({ model: 'nano', prompt: 'And it came to pass', max_tokens: 8, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  const text = r.choices[0].text;
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
  const ids = (await postJson(`${srv.url}/tokenize`, { content: 'And it came to pass' })).json.tokens;
  const r2 = await client.completions.create({ model: 'nano', prompt: ids, max_tokens: 8, temperature: 0 });
  assert.equal(r2.choices[0].text, text);
  const e = await client.completions.create({ model: 'nano', prompt: 'And it came', max_tokens: 2, echo: true });
  assert.ok(e.choices[0].text.startsWith('And it came'));
  let streamed = '';
  for await (const ch of await client.completions.create({ model: 'nano', prompt: 'And it came to pass', max_tokens: 8, temperature: 0, stream: true }))
    streamed += ch.choices[0]?.text ?? '';
  assert.equal(streamed, text);
  const lp = await client.completions.create({ model: 'nano', prompt: 'And', max_tokens: 3, logprobs: 2, ignore_eos: true });
  const l = lp.choices[0].logprobs;
  assert.equal(l.tokens.length, 3);
  assert.equal(l.token_logprobs.length, 3);
  assert.equal(lp.usage.completion_tokens, 3);
  assert.equal(Object.keys(l.top_logprobs[0]).length >= 1, true);
  // Token texts are bytes; they join to the text unless a character was split across tokens.
  if (/^[\x00-\x7f]*$/.test(lp.choices[0].text)) assert.equal(l.tokens.join(''), lp.choices[0].text);
});

test('responses: plain and streamed events', { skip: SKIP }, async () => {
  const r = await client.responses.create({
    model: 'nano', instructions: 'Answer.', input: 'Who was Abraham?', max_output_tokens: 8, reasoning: { effort: 'none' },
  });
  assert.equal(r.object, 'response');
  assert.ok(['completed', 'incomplete'].includes(r.status));
  assert.equal(typeof r.output_text, 'string');
  assert.equal(r.usage.output_tokens_details.reasoning_tokens, 0);
  const stream = client.responses.stream({
    model: 'nano', input: [{ role: 'user', content: [{ type: 'input_text', text: 'Who was Abraham?' }] }],
    max_output_tokens: 16, reasoning: { effort: 'high' },
  });
  const types = [];
  let seq = -1;
  for await (const ev of stream) {
    types.push(ev.type);
    assert.equal(ev.sequence_number, seq + 1);
    seq = ev.sequence_number;
  }
  const final = await stream.finalResponse();
  assert.equal(types[0], 'response.created');
  assert.equal(types[1], 'response.in_progress');
  assert.ok(['response.completed', 'response.incomplete'].includes(types.at(-1)));
  assert.ok(types.includes('response.output_item.added') && types.includes('response.output_item.done'));
  assert.ok(final.output.length >= 1);
  assert.ok(final.usage.output_tokens >= 1 && final.usage.output_tokens <= 16);
  // A function-call round trip in the input is accepted.
  const rt = await client.responses.create({
    model: 'nano', max_output_tokens: 4, reasoning: { effort: 'none' },
    tools: [{ type: 'function', name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } }],
    input: [
      { role: 'user', content: 'What time is it in Tokyo?' },
      { type: 'function_call', call_id: 'call_1', name: 'get_time', arguments: '{"tz": "Asia/Tokyo"}' },
      { type: 'function_call_output', call_id: 'call_1', output: '10:00' },
    ],
  });
  assert.ok(rt.output.length >= 1);
  assert.ok(rt.usage.input_tokens > 20);
});

test('tokenize and detokenize', { skip: SKIP }, async () => {
  const t = await postJson(`${srv.url}/tokenize`, { content: 'In the beginning<｜User｜>' });
  assert.equal(t.status, 200);
  const d = await postJson(`${srv.url}/detokenize`, { tokens: t.json.tokens });
  assert.equal(d.json.content, 'In the beginning<｜User｜>');
});

test('SSE framing: data lines and [DONE]', { skip: SKIP }, async () => {
  const r = await postJson(`${srv.url}/v1/chat/completions`, { messages: user('Hi'), max_tokens: 3, stream: true });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /text\/event-stream/);
  const evs = parseSse(r.text);
  assert.equal(evs.at(-1).data, '[DONE]');
});
