// Streamed and whole answers agree, through the official clients: no empty message item when
// max_output_tokens runs out during thinking, Responses echoes `text.format`, `ignore_eos` runs to
// max_tokens in thinking mode too, and a server shutting down answers Responses with 503 (an `error`
// event when streaming).
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
