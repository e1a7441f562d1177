// Shared helpers of the `dsv4 serve` integration tests: start a server on a free port, talk to it.
import { spawn, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const here = new URL('.', import.meta.url).pathname;
export const BIN = process.env.DSV4_BIN || resolve(here, '../../build/dsv4');
export const MODEL = process.env.DSV4_TEST_MODEL || resolve(here, '../../models/dsv4-nano');
export const MODEL_NAME = basename(MODEL);
// Run by hand without a build or model, a test file skips itself; under ctest (which sets both
// variables) a missing binary or model is a failure.
const missing = !existsSync(BIN) ? `no dsv4 binary at ${BIN} (set DSV4_BIN)`
  : !existsSync(`${MODEL}/config.json`) ? `no model at ${MODEL} (set DSV4_TEST_MODEL)` : false;
if (missing && process.env.DSV4_BIN && process.env.DSV4_TEST_MODEL) throw new Error(missing);
export const SKIP = missing;

export const execFileP = promisify(execFile);

// Starts `dsv4 serve -m MODEL --port 0 ARGS...` and resolves once it prints its address.
// The disk prefix cache is off unless a test names --cache-dir: one test's files must not warm another's.
export async function startServer(args = [], { timeoutMs = 120000, model = MODEL } = {}) {
  const disk = args.includes('--cache-dir') ? [] : ['--cache-dir', 'off'];
  const proc = spawn(BIN, ['serve', '-m', model, '--port', '0', ...disk, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start in time:\n${log}`)), timeoutMs);
    proc.stderr.on('data', (b) => {
      log += b.toString();
      const m = log.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`server exited with ${code}:\n${log}`));
    });
  });
  proc.stderr.on('data', (b) => process.stderr.write(`[server] ${b}`));
  const exited = new Promise((ok) => proc.on('exit', (code, signal) => ok({ code, signal })));
  return {
    url,
    proc,
    log: () => log,
    client: (opts = {}) => new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 120000, ...opts }),
    anthropic: (opts = {}) => new Anthropic({ baseURL: url, apiKey: 'none', maxRetries: 0, timeout: 120000, ...opts }),
    // SIGTERM, then the exit status (a clean shutdown exits 0).
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

export async function postJson(url, body, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, text, json, headers: res.headers };
}

// Parses a server-sent-events body into [{event, data}] (data JSON-parsed when it can be); comments
// are kept as {comment}.
export function parseSse(text) {
  const out = [];
  for (const block of text.split('\n\n')) {
    if (!block.trim()) continue;
    const ev = { event: null, data: null };
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) out.push({ comment: line.slice(1).trim() });
      else if (line.startsWith('event: ')) ev.event = line.slice(7);
      else if (line.startsWith('data: ')) ev.data = line.slice(6);
    }
    if (ev.data !== null) {
      try {
        ev.data = JSON.parse(ev.data);
      } catch {}
      out.push(ev);
    }
  }
  return out;
}

// curl, for the Anthropic route: returns {status, body}.
export async function curl(url, body, headers = []) {
  const args = ['-s', '-N', '-w', '\n%{http_code}', '-H', 'content-type: application/json', '--data-binary', JSON.stringify(body)];
  for (const h of headers) args.push('-H', h);
  const { stdout } = await execFileP('curl', [...args, url], { maxBuffer: 64 << 20 });
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
}

export async function metrics(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = {};
  for (const line of text.split('\n')) {
    const r = line.match(/^(\w+)(\{[^}]*\})? (\S+)$/);
    if (r) m[r[1] + (r[2] || '')] = Number(r[3]);
  }
  return m;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Markup that must never reach content or reasoning.
export const MARKUP = /<think>|<\/think>|｜DSML｜|<｜end▁of▁sentence｜>|<｜begin▁of▁sentence｜>/;
