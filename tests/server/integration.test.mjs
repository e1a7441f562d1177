// What integrators expect of an OpenAI/Anthropic endpoint, through the official clients: each API's
// value ranges, the 401 shape, and /v1/models in both APIs' shapes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, postJson, MODEL, SKIP } from './lib.mjs';

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

test('/v1/models: no disk path, created is the model folder mtime; Anthropic shape for its client', { skip: SKIP }, async () => {
  const created = Math.floor(statSync(MODEL).mtimeMs / 1000);
  const c = openai();
  const list = await c.models.list();
  assert.deepEqual(list.data.map((m) => m.id), ['nano']);
  const m = list.data[0];
  assert.equal(m.object, 'model');
  assert.equal(m.created, created);
  assert.ok(!JSON.stringify(m).includes(MODEL) && !('root' in m), JSON.stringify(m));
  assert.deepEqual(await c.models.retrieve('nano'), m);

  const a = anthropic();
  const seen = [];
  for await (const info of a.models.list()) seen.push(info);
  assert.deepEqual(seen.map((x) => x.id), ['nano']);
  assert.equal(seen[0].type, 'model');
  assert.equal(seen[0].display_name, 'nano');
  assert.equal(Date.parse(seen[0].created_at) / 1000, created);
  assert.deepEqual(await a.models.retrieve('nano'), seen[0]);
  const page = await a.models.list({ limit: 5 });
  assert.equal(page.has_more, false);
  assert.equal(page.first_id, 'nano');
  assert.equal((await a.models.list({ after_id: 'nano' })).data.length, 0);
  const nf = await a.models.retrieve('claude-9').catch((x) => x);
  assert.ok(nf instanceof Anthropic.NotFoundError);
  assert.equal(nf.error.error.type, 'not_found_error');
  const bad = await a.models.list({ limit: 0 }).catch((x) => x);
  assert.ok(bad instanceof Anthropic.BadRequestError);
  // Its errors there are in its shape too.
  const me = await new Anthropic({ baseURL: srv.url, apiKey: 'wrong', maxRetries: 0 }).models.list().catch((x) => x);
  assert.ok(me instanceof Anthropic.AuthenticationError);
  assert.equal(me.error.type, 'error');
});
