// Tool calls and history conversion: API requests must render exactly the encoder's golden prompts
// (tests/data/encoding/golden-chat.jsonl), and a call -> tool result -> answer round trip must work
// through the official client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { startServer, postJson, MARKUP, SKIP } from './lib.mjs';

const GOLDEN = resolve(new URL('.', import.meta.url).pathname, '../data/encoding/golden-chat.jsonl');

let srv, client;
before(async () => {
  if (SKIP) return;
  srv = await startServer(['--alias', 'nano']);
  client = srv.client();
});
after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  assert.equal(code, 0);
});

// A golden record as an API request: tools and response_format move from the system message to the
// top level (where API clients put them), wo_eos becomes DeepSeek's `prefix` (a closed final assistant
// turn: continue_final_message false), the options become the thinking / reasoning_effort fields. Records using what the API does not expose are skipped.
function asRequest(rec) {
  const o = rec.options;
  if (o.context || !o.add_default_bos_token || !o.drop_thinking) return null;
  const msgs = structuredClone(rec.messages);
  const body = { model: 'nano', thinking: { type: o.thinking_mode === 'thinking' ? 'enabled' : 'disabled' } };
  if (o.reasoning_effort) body.reasoning_effort = o.reasoning_effort;
  for (const [i, m] of msgs.entries()) {
    if (!['system', 'user', 'assistant', 'tool'].includes(m.role)) return null;
    if (m.task || m.mask !== undefined) return null;
    if (Array.isArray(m.content) && m.content.some((p) => p.type !== 'text')) return null;  // images are refused
    if (m.tools || m.response_format) {
      if (i !== 0 || m.role !== 'system') return null;
      if (m.tools) body.tools = m.tools;
      if (m.response_format) body.response_format = m.response_format;
      delete m.tools;
      delete m.response_format;
    }
    if (m.wo_eos) {
      delete m.wo_eos;
      m.prefix = true;
    }
  }
  // A conversation ending in a whole assistant turn: the API would continue it, unless told not to.
  if (msgs.at(-1).role === 'assistant' && !msgs.at(-1).prefix) body.continue_final_message = false;
  body.messages = msgs;
  return body;
}

// History arguments that are not a JSON object: the encoder renders the reference's fallback (one
// `arguments` string parameter), but the API refuses them (a 400 naming the field) on every dialect.
function badArguments(body) {
  for (const [i, m] of body.messages.entries())
    for (const [k, c] of (m.tool_calls || []).entries()) {
      const a = c.function?.arguments;
      if (typeof a !== 'string' || a.trim() === '') continue;
      let v;
      try {
        v = JSON.parse(a);
      } catch {}
      if (a.startsWith('\uFEFF') || typeof v !== 'object' || v === null || Array.isArray(v))
        return `messages[${i}].tool_calls[${k}].function.arguments`;
    }
  return null;
}

test('chat render equals the golden prompts', { skip: SKIP }, async () => {
  const recs = readFileSync(GOLDEN, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  let checked = 0, withTools = 0, refused = 0;
  for (const rec of recs) {
    const body = asRequest(rec);
    if (!body) continue;
    const r = await postJson(`${srv.url}/v1/chat/render`, body);
    const bad = badArguments(body);
    if (bad) {
      assert.equal(r.status, 400, `${rec.id}: ${r.text}`);
      assert.equal(r.json.error.param, bad);
      refused++;
      continue;
    }
    assert.equal(r.status, 200, `${rec.id}: ${r.text}`);
    assert.equal(r.json.prompt, rec.prompt, `${rec.id} (${rec.name})`);
    checked++;
    if (body.tools || rec.messages.some((m) => m.tool_calls)) withTools++;
  }
  console.log(`golden prompts reproduced: ${checked} of ${recs.length} (${withTools} with tools, ${refused} refused)`);
  assert.ok(checked >= 35 && withTools >= 10 && refused >= 1);
});

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
  },
}];

test('tool call round trip: call -> result -> answer', { skip: SKIP }, async () => {
  const messages = [{ role: 'system', content: 'You can look up the weather.' }, { role: 'user', content: 'Weather in Paris for 2 days?' }];
  // 1. The model is asked with tools (the nano model answers in prose; a real one would call).
  const first = await client.chat.completions.create({ model: 'nano', messages, tools, tool_choice: 'auto', max_tokens: 8 });
  const m1 = first.choices[0].message;
  assert.ok(['stop', 'length', 'tool_calls'].includes(first.choices[0].finish_reason));
  if (m1.tool_calls) {
    for (const c of m1.tool_calls) {
      assert.match(c.id, /^call_/);
      assert.equal(c.type, 'function');
      JSON.parse(c.function.arguments);
    }
  }
  // 2. The client runs the tool and sends the call and its result back, as an agent would.
  const call = { id: 'call_abc123', type: 'function', function: { name: 'get_weather', arguments: JSON.stringify({ city: 'Paris', days: 2 }) } };
  const history = [
    ...messages,
    { role: 'assistant', content: null, reasoning_content: 'Look it up.', tool_calls: [call] },
    { role: 'tool', tool_call_id: 'call_abc123', content: '{"forecast": ["rain", "sun"]}' },
  ];
  const rendered = (await postJson(`${srv.url}/v1/chat/render`, { messages: history, tools })).json;
  assert.ok(rendered.prompt.includes(
    '<think>Look it up.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n' +
    '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n' +
    '<｜DSML｜parameter name="days" string="false">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>' +
    '<｜User｜><tool_result>{"forecast": ["rain", "sun"]}</tool_result><｜Assistant｜><think>'), rendered.prompt);
  // 3. The answer after the tool result.
  const second = await client.chat.completions.create({ model: 'nano', messages: history, tools, max_tokens: 8 });
  const m2 = second.choices[0].message;
  assert.ok(!MARKUP.test(m2.content ?? ''));
  assert.equal(second.usage.prompt_tokens, rendered.num_tokens);
  // Streaming the same turn works too.
  let n = 0;
  for await (const ch of await client.chat.completions.create({ model: 'nano', messages: history, tools, max_tokens: 4, stream: true }))
    n += ch.choices.length;
  assert.ok(n >= 1);
});

test('tool_choice: none drops the tools, a named function keeps only it', { skip: SKIP }, async () => {
  const two = [...tools, { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } }];
  const messages = [{ role: 'user', content: 'Hi' }];
  const r = async (extra) => (await postJson(`${srv.url}/v1/chat/render`, { messages, tools: two, ...extra })).json.prompt;
  assert.ok(!(await r({ tool_choice: 'none' })).includes('## Tools'));
  const named = await r({ tool_choice: { type: 'function', function: { name: 'get_time' } } });
  assert.ok(named.includes('"name": "get_time"') && !named.includes('"name": "get_weather"'));
  const all = await r({ tool_choice: 'required' });
  assert.ok(all.includes('"name": "get_time"') && all.includes('"name": "get_weather"'));
});
