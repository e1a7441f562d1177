// Bad requests get the right status and an OpenAI-schema error (Anthropic routes: Anthropic's shape);
// with --api-key every route but /health needs the key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, postJson, SKIP } from './lib.mjs';

const KEY = 'sk-test-123';
let srv, client, url;
before(async () => {
  if (SKIP) return;
  srv = await startServer(['--api-key', KEY, '--ctx', '256', '--max-body-mb', '1', '--alias', 'nano']);
  url = srv.url;
  client = srv.client({ apiKey: KEY });
});
after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  assert.equal(code, 0);
});

const auth = { authorization: `Bearer ${KEY}` };
const chat = (body, headers = auth) => postJson(`${url}/v1/chat/completions`, body, headers);
const msgs = [{ role: 'user', content: 'Hi' }];

function openaiError(r, status, param) {
  assert.equal(r.status, status, r.text);
  const e = r.json?.error;
  assert.ok(e, `no error object: ${r.text}`);
  assert.equal(typeof e.message, 'string');
  assert.equal(typeof e.type, 'string');
  assert.ok('param' in e && 'code' in e);
  if (param !== undefined) assert.equal(e.param, param);
  return e;
}

test('API key: missing or wrong is 401, right works, /health is open', { skip: SKIP }, async () => {
  openaiError(await chat({ messages: msgs, max_tokens: 1 }, {}), 401);
  openaiError(await chat({ messages: msgs, max_tokens: 1 }, { authorization: 'Bearer wrong' }), 401);
  const noKey = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(noKey.chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 1 }), OpenAI.AuthenticationError);
  await assert.rejects(noKey.models.list(), OpenAI.AuthenticationError);
  const ok = await client.chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 1 });
  assert.equal(ok.choices.length, 1);
  assert.equal((await fetch(`${url}/health`)).status, 200);
  assert.equal((await fetch(`${url}/metrics`)).status, 401);
  // x-api-key works too (the Anthropic clients' header).
  const r = await chat({ messages: msgs, max_tokens: 1 }, { 'x-api-key': KEY });
  assert.equal(r.status, 200);
});

test('malformed JSON and non-object bodies are 400', { skip: SKIP }, async () => {
  openaiError(await chat('{"messages": [', auth), 400);
  openaiError(await chat('[1, 2]', auth), 400);
  openaiError(await chat('', auth), 400);
});

test('wrong types name the field', { skip: SKIP }, async () => {
  openaiError(await chat({ messages: msgs, temperature: 'hot' }), 400, 'temperature');
  openaiError(await chat({ messages: 'Hi' }), 400, 'messages');
  openaiError(await chat({}), 400, 'messages');
  openaiError(await chat({ messages: msgs, max_tokens: 'ten' }), 400, 'max_tokens');
  openaiError(await chat({ messages: msgs, max_tokens: 0 }), 400, 'max_tokens');
  openaiError(await chat({ messages: msgs, stream: 'yes' }), 400, 'stream');
  openaiError(await chat({ messages: msgs, stop: [1] }), 400, 'stop');
  openaiError(await chat({ messages: msgs, top_p: 0 }), 400, 'top_p');
  openaiError(await chat({ messages: msgs, top_logprobs: 50, logprobs: true }), 400, 'top_logprobs');
  openaiError(await chat({ messages: msgs, n: 2 }), 400, 'n');
  openaiError(await chat({ messages: [{ role: 'wizard', content: 'x' }] }), 400, 'messages[0].role');
  openaiError(await chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }), 400,
    'messages[0].content[0].type');
  openaiError(await chat({ messages: msgs, tools: [{ type: 'function', function: {} }] }), 400, 'tools[0].function.name');
  openaiError(await chat({ messages: msgs, tools: [], tool_choice: { type: 'function', function: { name: 'nope' } } }), 400,
    'tool_choice');
  // Through the client: a BadRequestError.
  await assert.rejects(client.chat.completions.create({ model: 'nano', messages: msgs, temperature: -1 }), OpenAI.BadRequestError);
  const c = await postJson(`${url}/v1/completions`, { prompt: [1, 99999999] }, auth);
  openaiError(c, 400, 'prompt');
});

test('unknown model is 404', { skip: SKIP }, async () => {
  const e = openaiError(await chat({ model: 'gpt-9', messages: msgs }), 404, 'model');
  assert.equal(e.code, 'model_not_found');
  await assert.rejects(client.chat.completions.create({ model: 'gpt-9', messages: msgs }), OpenAI.NotFoundError);
});

test('prompt longer than the context is 400', { skip: SKIP }, async () => {
  const long = 'In the beginning God created the heaven and the earth. '.repeat(100);
  const e = openaiError(await chat({ messages: [{ role: 'user', content: long }] }), 400);
  assert.equal(e.code, 'context_length_exceeded');
  assert.match(e.message, /256/);
  openaiError(await postJson(`${url}/v1/completions`, { prompt: long }, auth), 400);
});

test('body over the size limit is 413', { skip: SKIP }, async () => {
  const big = JSON.stringify({ messages: [{ role: 'user', content: 'a'.repeat(2 << 20) }] });
  openaiError(await chat(big), 413);
});

test('invalid UTF-8 is 400', { skip: SKIP }, async () => {
  const bytes = Buffer.concat([Buffer.from('{"messages": [{"role": "user", "content": "'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]);
  const e = openaiError(await chat(new Uint8Array(bytes)), 400);
  assert.match(e.message, /UTF-8/);
});

test('unknown route is a JSON 404', { skip: SKIP }, async () => {
  const r = await postJson(`${url}/v1/nothing`, {}, auth);
  openaiError(r, 404);
});

test('Anthropic routes use the Anthropic error shape', { skip: SKIP }, async () => {
  const anth = (body, headers = { 'x-api-key': KEY }) => postJson(`${url}/v1/messages`, body, headers);
  const check = (r, status, type) => {
    assert.equal(r.status, status, r.text);
    assert.equal(r.json.type, 'error');
    assert.equal(r.json.error.type, type);
    assert.equal(typeof r.json.error.message, 'string');
  };
  check(await anth({ messages: msgs, max_tokens: 1 }, {}), 401, 'authentication_error');
  check(await anth({ messages: msgs }), 400, 'invalid_request_error');  // max_tokens is required
  check(await anth('{"x"'), 400, 'invalid_request_error');
  check(await anth({ model: 'claude-9', messages: msgs, max_tokens: 1 }), 404, 'not_found_error');
  check(await anth(JSON.stringify({ messages: [{ role: 'user', content: 'a'.repeat(2 << 20) }], max_tokens: 1 })), 413,
    'request_too_large');
});

test('the server still serves after all that', { skip: SKIP }, async () => {
  const r = await client.chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 2 });
  assert.ok(r.usage.completion_tokens >= 1);
});
