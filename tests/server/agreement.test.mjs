// Streamed and whole answers agree, through the official clients: Anthropic's message_start usage is the
// final usage (prefix-cache hit included), no empty text block or message item when max_tokens runs out
// during thinking, Responses echoes `text.format`, `ignore_eos` runs to max_tokens in thinking mode too,
// and a server shutting down answers Responses with 503 (an `error` event when streaming).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, postJson, parseSse, sleep, SKIP } from './lib.mjs';

let srv, client, anth;
before(async () => {
  if (SKIP) return;
  // One sequence at a time and quick keep-alives: a request queued behind another gets keep-alives
  // before its first token.
  srv = await startServer(['--alias', 'nano', '--parallel', '1', '--keep-alive', '0.05']);
  client = srv.client();
  anth = srv.anthropic();
});
after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  assert.equal(code, 0);
});

const ask = (content) => [{ role: 'user', content }];

test('messages stream: message_start usage equals the final usage, cache hit included', { skip: SKIP }, async () => {
  const body = {
    model: 'nano', max_tokens: 4, temperature: 0, system: 'You are a scribe of the old books.',
    messages: ask('Tell of the days of Noah, and of the flood that covered the face of the earth.'),
  };
  for (const round of [1, 2]) {
    const s = anth.messages.stream(body);
    let start = null;
    s.on('streamEvent', (e) => {
      if (e.type === 'message_start') start = { ...e.message.usage };  // the SDK updates that object later
    });
    const done = await s.finalMessage();
    for (const k of ['input_tokens', 'cache_read_input_tokens', 'cache_creation_input_tokens'])
      assert.equal(start[k], done.usage[k], `round ${round}: ${k}`);
    if (round === 2) assert.ok(start.cache_read_input_tokens > 0, 'the repeated prompt hits the prefix cache');
    const whole = await anth.messages.create(body);
    assert.equal(whole.usage.input_tokens + whole.usage.cache_read_input_tokens,
      done.usage.input_tokens + done.usage.cache_read_input_tokens);
  }
});

test('messages stream: only comments precede message_start, even while queued', { skip: SKIP }, async () => {
  // A long request holds the only sequence; the stream behind it waits in the queue.
  const long = client.chat.completions.create({ model: 'nano', messages: ask('Hi'), max_tokens: 400, ignore_eos: true });
  for (let i = 0; i < 200 && (await (await fetch(`${srv.url}/health`)).json()).active < 1; i++) await sleep(10);
  const r = await postJson(`${srv.url}/v1/messages`, {
    model: 'nano', max_tokens: 3, stream: true, messages: ask('Who begat Enos?'),
  }, { 'anthropic-version': '2023-06-01' });
  await long;
  const evs = parseSse(r.text);
  const first = evs.findIndex((e) => !e.comment);
  assert.ok(first > 0, 'keep-alive comments came while it waited');
  assert.equal(evs[first].event, 'message_start');
  assert.ok(evs.slice(first).some((e) => e.event === 'message_stop'));
});

test('messages: max_tokens inside the reasoning is the thinking block alone, streamed or not', { skip: SKIP }, async () => {
  // Two tokens at temperature 0 stay inside this prompt's reasoning.
  const body = { model: 'nano', max_tokens: 2, temperature: 0, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: ask('Who was Moses?') };
  const m = await anth.messages.create(body);
  assert.equal(m.stop_reason, 'max_tokens');
  assert.deepEqual(m.content.map((b) => b.type), ['thinking']);
  const streamed = await anth.messages.stream(body).finalMessage();
  assert.deepEqual(streamed.content.map((b) => b.type), ['thinking']);
  assert.equal(streamed.content[0].thinking, m.content[0].thinking);
});

test('responses: max_output_tokens inside the reasoning is one reasoning item, streamed or not', { skip: SKIP }, async () => {
  const rbody = { model: 'nano', input: 'Who was Moses?', max_output_tokens: 2, temperature: 0 };
  const r = await client.responses.create(rbody);
  assert.equal(r.status, 'incomplete');
  assert.deepEqual(r.output.map((o) => o.type), ['reasoning']);
  let final = null;
  const added = [];
  for await (const ev of await client.responses.create({ ...rbody, stream: true })) {
    if (ev.type === 'response.output_item.added') added.push(ev.item.type);
    if (ev.type === 'response.incomplete' || ev.type === 'response.completed') final = ev.response;
  }
  assert.deepEqual(added, ['reasoning']);
  assert.deepEqual(final.output.map((o) => o.type), ['reasoning']);
  assert.equal(final.output[0].content[0].text, r.output[0].content[0].text);
});

test('responses: text.format is echoed as given', { skip: SKIP }, async () => {
  const schema = { type: 'object', properties: { verse: { type: 'string' } }, required: ['verse'], additionalProperties: false };
  const formats = [
    { type: 'json_schema', name: 'verse', schema, strict: true, description: 'One verse.' },
    { type: 'json_object' },
    { type: 'text' },
  ];
  for (const format of formats) {
    const r = await client.responses.create({ model: 'nano', input: 'Say a verse.', max_output_tokens: 2, text: { format } });
    assert.deepEqual(r.text.format, format);
    for await (const ev of await client.responses.create({ model: 'nano', input: 'Hi', max_output_tokens: 1, text: { format }, stream: true }))
      if (ev.type === 'response.created') assert.deepEqual(ev.response.text.format, format);
  }
  const plain = await client.responses.create({ model: 'nano', input: 'Hi', max_output_tokens: 1 });
  assert.deepEqual(plain.text.format, { type: 'text' });
  const bad = async (text, param) => {
    const e = await client.responses.create({ model: 'nano', input: 'Hi', max_output_tokens: 1, text }).catch((x) => x);
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.param, param);
  };
  await bad({ format: { type: 'xml' } }, 'text.format.type');
  await bad({ format: { type: 'json_schema', name: 'x' } }, 'text.format.schema');
  await bad({ format: { type: 'json_schema', schema } }, 'text.format.name');
});

test('ignore_eos runs to max_tokens, thinking or not, on every chat route', { skip: SKIP }, async () => {
  const N = 300;
  for (const thinking of ['enabled', 'disabled']) {
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({
        model: 'nano', messages: ask('Who was Moses?'), max_tokens: N, ignore_eos: true, temperature: 1, seed, thinking: { type: thinking },
      });
      assert.equal(r.choices[0].finish_reason, 'length', `${thinking} seed ${seed}`);
      assert.equal(r.usage.completion_tokens, N);
    }
  }
  const m = await anth.messages.create({ model: 'nano', max_tokens: N, messages: ask('Who was Moses?'), ignore_eos: true, temperature: 1, seed: 4 });
  assert.equal(m.stop_reason, 'max_tokens');
  assert.equal(m.usage.output_tokens, N);
  const r = await client.responses.create({ model: 'nano', input: 'Who was Moses?', max_output_tokens: N, ignore_eos: true, seed: 5 });
  assert.equal(r.status, 'incomplete');
  assert.equal(r.usage.output_tokens, N);
});

test('responses during shutdown: 503, and an error event when streaming', { skip: SKIP }, async () => {
  const s = await startServer(['--alias', 'nano']);
  const c = s.client();
  const body = { model: 'nano', input: 'Who was Moses?', max_output_tokens: 20000, ignore_eos: true };
  const whole = postJson(`${s.url}/v1/responses`, body);
  const events = [];
  const streamed = (async () => {
    try {
      for await (const ev of await c.responses.create({ ...body, stream: true })) events.push(ev.type);
    } catch (e) {
      return e;
    }
    return null;
  })();
  for (let i = 0; i < 200; i++) {
    const h = await (await fetch(`${s.url}/health`)).json();
    if (h.active === 2) break;
    await sleep(20);
  }
  const stopped = s.stop();
  const r = await whole;
  assert.equal(r.status, 503, r.text);
  assert.match(r.json.error.message, /shutting down/);
  const err = await streamed;
  assert.ok(err instanceof OpenAI.APIError, `the client raises the error event: ${err}`);
  assert.match(err.message, /shutting down/);
  assert.ok(!events.includes('response.failed') && !events.includes('response.completed'));
  assert.equal((await stopped).code, 0);
});
