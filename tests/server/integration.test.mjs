// What integrators expect of an OpenAI/Anthropic endpoint, through the official clients: CORS
// (--cors-origin), request ids (x-request-id; Anthropic's request-id), each API's value ranges, the 401
// shape, 405 for a known path asked with the wrong method, and /v1/models in both APIs' shapes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, postJson, MODEL, SKIP } from './lib.mjs';

const KEY = 'sk-test-456';
const ORIGIN = 'http://app.example';
let srv, any;
before(async () => {
  if (SKIP) return;
  srv = await startServer(['--alias', 'nano', '--api-key', KEY, '--cors-origin', `${ORIGIN},http://other.example`]);
  any = await startServer(['--alias', 'nano', '--cors-origin', '*']);
});
after(async () => {
  for (const s of [srv, any]) if (s) assert.equal((await s.stop()).code, 0);
});

const msgs = [{ role: 'user', content: 'Hi' }];
const auth = { authorization: `Bearer ${KEY}` };
const openai = () => srv.client({ apiKey: KEY });
const anthropic = () => srv.anthropic({ apiKey: KEY });

test('CORS: the preflight needs no key; listed origins are echoed, others get no CORS headers', { skip: SKIP }, async () => {
  const preflight = (url, origin) => fetch(url, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, x-stainless-os' },
  });
  let r = await preflight(`${srv.url}/v1/chat/completions`, ORIGIN);
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), ORIGIN);
  assert.equal(r.headers.get('vary'), 'Origin');
  assert.match(r.headers.get('access-control-allow-methods'), /POST/);
  assert.equal(r.headers.get('access-control-allow-headers'), 'authorization, content-type, x-stainless-os');
  assert.ok(Number(r.headers.get('access-control-max-age')) > 0);
  r = await preflight(`${srv.url}/v1/chat/completions`, 'http://evil.example');
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), null);
  r = await preflight(`${srv.url}/v1/nothing`, ORIGIN);
  assert.equal(r.status, 404);
  // The answers themselves carry the origin and expose the request id, errors included.
  r = await fetch(`${srv.url}/v1/models`, { headers: { origin: ORIGIN, ...auth } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('access-control-allow-origin'), ORIGIN);
  assert.match(r.headers.get('access-control-expose-headers'), /x-request-id/);
  r = await fetch(`${srv.url}/v1/models`, { headers: { origin: ORIGIN } });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('access-control-allow-origin'), ORIGIN);
  // '*' allows any origin; without --cors-origin (errors.test.mjs's server) there is none.
  r = await fetch(`${any.url}/v1/messages`, { method: 'OPTIONS', headers: { origin: 'http://x.example', 'access-control-request-method': 'POST' } });
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), '*');
  const s = await any.client().chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 1 }).withResponse();
  assert.equal(s.response.headers.get('access-control-allow-origin'), '*');
});

test('request ids: x-request-id echoed or made up; Anthropic routes answer request-id', { skip: SKIP }, async () => {
  const c = openai();
  const mine = await c.chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 1 }, { headers: { 'x-request-id': 'trace-42' } });
  assert.equal(mine._request_id, 'trace-42');
  const made = await c.chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 1 });
  assert.match(made._request_id, /^req_\w+$/);
  const other = await c.chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 1 });
  assert.notEqual(other._request_id, made._request_id);
  // Errors and streams carry it too.
  const e = await c.chat.completions.create({ model: 'nano', messages: msgs, temperature: 5 }).catch((x) => x);
  assert.match(e.requestID, /^req_/);
  const { response } = await c.chat.completions.create({ model: 'nano', messages: msgs, max_tokens: 1, stream: true }).withResponse();
  assert.match(response.headers.get('x-request-id'), /^req_/);
  await response.body?.cancel();

  const a = anthropic();
  const m = await a.messages.create({ model: 'nano', max_tokens: 1, messages: msgs });
  assert.match(m._request_id, /^req_/);
  const am = await a.messages.create({ model: 'nano', max_tokens: 1, messages: msgs }, { headers: { 'x-request-id': 'trace-43' } });
  assert.equal(am._request_id, 'trace-43');
  const ae = await a.messages.create({ model: 'nano', max_tokens: 1, messages: msgs, temperature: 1.5 }).catch((x) => x);
  assert.match(ae.requestID, /^req_/);
  // A client id that is not short plain text is replaced.
  const r = await postJson(`${srv.url}/v1/chat/completions`, { messages: msgs, max_tokens: 1 }, { ...auth, 'x-request-id': 'x'.repeat(300) });
  assert.match(r.headers.get('x-request-id'), /^req_/);
});

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

test('405 for a known path asked with another method, with Allow', { skip: SKIP }, async () => {
  const cases = [
    ['GET', '/v1/chat/completions', 'POST'], ['DELETE', '/v1/responses', 'POST'], ['PUT', '/v1/models', 'GET, HEAD'],
    ['POST', '/health', 'GET, HEAD'], ['PATCH', '/v1/models/nano', 'GET, HEAD'],
  ];
  for (const [method, path, allow] of cases) {
    const r = await fetch(`${srv.url}${path}`, { method, headers: { ...auth, 'content-type': 'application/json' } });
    assert.equal(r.status, 405, `${method} ${path}`);
    assert.equal(r.headers.get('allow'), `${allow}, OPTIONS`);
    const j = await r.json();
    assert.match(j.error.message, new RegExp(`Method ${method} is not allowed on ${path}`));
  }
  const r = await fetch(`${srv.url}/v1/messages`, { method: 'GET', headers: auth });
  assert.equal(r.status, 405);
  assert.equal((await r.json()).type, 'error', 'Anthropic shape on its route');
  assert.equal((await fetch(`${srv.url}/v1/nothing`, { method: 'GET', headers: auth })).status, 404);
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
