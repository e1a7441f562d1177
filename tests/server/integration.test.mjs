// What integrators expect of an OpenAI/Anthropic endpoint, through the official clients: each API's
// value ranges and the 401 shape.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, postJson, SKIP } from './lib.mjs';

const KEY = 'sk-test-456';
let srv;
before(async () => {
  if (SKIP) return;
  srv = await startServer(['--alias', 'nano', '--api-key', KEY]);
});
after(async () => {
  if (srv) assert.equal((await srv.stop()).code, 0);
});

const msgs = [{ role: 'user', content: 'Hi' }];
const auth = { authorization: `Bearer ${KEY}` };
const openai = () => srv.client({ apiKey: KEY });
const anthropic = () => srv.anthropic({ apiKey: KEY });

test('value ranges: temperature 0-2 on OpenAI routes, 0-1 on Anthropic, 400 in each shape', { skip: SKIP }, async () => {
  const c = openai();
  for (const temperature of [-0.1, 2.01]) {
    const e = await c.chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 1, temperature }).catch((x) => x);
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.param, 'temperature');
    assert.match(e.message, /between 0 and 2/);
    const r = await c.responses.create({ model: 'nano', input: 'Hi', max_output_tokens: 1, temperature }).catch((x) => x);
    assert.ok(r instanceof OpenAI.BadRequestError);
    const k = await c.completions.create({ model: 'nano', prompt: 'Hi', max_tokens: 1, temperature }).catch((x) => x);
    assert.ok(k instanceof OpenAI.BadRequestError);
  }
  assert.equal((await c.chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 1, temperature: 2 })).choices.length, 1);
  const a = anthropic();
  for (const temperature of [-0.1, 1.01]) {
    const e = await a.messages.create({ model: 'nano', max_tokens: 1, messages: msgs, temperature }).catch((x) => x);
    assert.ok(e instanceof Anthropic.BadRequestError, String(e));
    assert.equal(e.error.type, 'error');
    assert.equal(e.error.error.type, 'invalid_request_error');
    assert.match(e.error.error.message, /'temperature' must be between 0 and 1/);
  }
  assert.equal((await a.messages.create({ model: 'nano', max_tokens: 1, messages: msgs, temperature: 1 })).type, 'message');
});

test('401: OpenAI shape with code invalid_api_key; Anthropic authentication_error', { skip: SKIP }, async () => {
  for (const apiKey of ['wrong', '']) {
    const c = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: apiKey || 'x', maxRetries: 0, defaultHeaders: apiKey ? {} : { authorization: null } });
    const e = await c.chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 1 }).catch((x) => x);
    assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
    assert.equal(e.status, 401);
    assert.equal(e.code, 'invalid_api_key');
    assert.equal(e.type, 'invalid_request_error');
    assert.equal(e.param, null);
  }
  const a = new Anthropic({ baseURL: srv.url, apiKey: 'wrong', maxRetries: 0 });
  const e = await a.messages.create({ model: 'nano', max_tokens: 1, messages: msgs }).catch((x) => x);
  assert.ok(e instanceof Anthropic.AuthenticationError, String(e));
  assert.equal(e.error.error.type, 'authentication_error');
});
