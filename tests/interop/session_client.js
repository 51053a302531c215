#!/usr/bin/env node
// A client of microstate.session.v1 that no one here wrote: @grpc/grpc-js with session.proto loaded at run
// time, and Google's own google/rpc protos for the error details. No generated code.
//
//   node session_client.js HOST:PORT [USER_PREFIX]      (or MICROSTATE_TARGET / INTEROP_ID_PREFIX)
//
// Runs every check against the server, prints one JSON summary on stdout and exits 1 if any check failed
// (2 on bad usage). Every user id it uses starts with USER_PREFIX, so runs against one server do not collide.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const googleProtos = require('google-proto-files');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const CALL_TIMEOUT_MS = 5000;
const TOKEN_SHAPE = /^(mss|msr)_[0-9a-f]{32}[A-Za-z0-9_-]{43}[0-9A-Za-z]{6}$/;
const CONCURRENT_REFRESHES = 4;

const session = grpc.loadPackageDefinition(
  protoLoader.loadSync(['microstate/session/v1/session.proto'], {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  }),
).microstate.session.v1;

const googleRpc = new protobuf.Root().loadSync(
  [googleProtos.getProtoPath('rpc', 'status.proto'), googleProtos.getProtoPath('rpc', 'error_details.proto')],
  { keepCase: true },
);

function connect(target) {
  const client = new session.SessionService(target, grpc.credentials.createInsecure());
  return {
    client,
    call(method, request) {
      const metadata = new grpc.Metadata();
      metadata.set('x-microstate-contract', 'microstate.session.v1');
      const options = { deadline: Date.now() + CALL_TIMEOUT_MS };
      return new Promise((resolve, reject) => {
        const done = (error, response) => (error ? reject(error) : resolve(response));
        client[method](request, metadata, options, done);
      });
    },
  };
}

/** Asserts `error` has status `code` and an ErrorInfo with `reason`; returns what the summary reports. */
function assertStatus(error, code, reason) {
  const name = grpc.status[error.code];
  assert.equal(name, code, `expected ${code}, got ${name}: ${error.details}`);
  const [raw] = error.metadata ? error.metadata.get('grpc-status-details-bin') : [];
  assert.ok(raw, `no grpc-status-details-bin trailer on ${name}`);
  const status = googleRpc.lookupType('google.rpc.Status').decode(raw);
  const details = status.details.map((any) => {
    const type = googleRpc.lookupType(any.type_url.slice(any.type_url.lastIndexOf('/') + 1));
    return { type: type.fullName.slice(1), ...type.toObject(type.decode(any.value), { defaults: true }) };
  });
  const info = details.find((detail) => detail.type === 'google.rpc.ErrorInfo');
  assert.ok(info, `no ErrorInfo among ${JSON.stringify(details)}`);
  assert.equal(info.reason, reason);
  assert.equal(info.domain, 'microstate.dev');
  return { code: name, reason: info.reason, metadata: info.metadata, message: error.details };
}

function failure(promise) {
  return promise.then(
    (response) => assert.fail(`expected the call to fail, it returned ${JSON.stringify(response)}`),
    (error) => error,
  );
}

/** The first `count` messages of a server stream, after its headers arrived. */
function firstEvents(call, count) {
  return new Promise((resolve, reject) => {
    const events = [];
    call.on('data', (event) => {
      events.push(event);
      if (events.length === count) {
        call.cancel();
        resolve(events);
      }
    });
    call.on('error', (error) => (error.code === grpc.status.CANCELLED ? undefined : reject(error)));
  });
}

async function checks(check, api, prefix) {
  const userId = `${prefix}-user`;
  let created;
  let refreshed;
  await check('create', async () => {
    const request = {
      user_id: userId,
      scopes: ['read'],
      request_id: `${prefix}-create`,
      idle_ttl: { seconds: 600 },
    };
    created = await api.call('CreateSession', request);
    assert.match(created.token, TOKEN_SHAPE);
    assert.match(created.refresh_token, TOKEN_SHAPE);
    assert.ok(created.token.startsWith('mss_') && created.refresh_token.startsWith('msr_'));
    assert.equal(created.session.state, 'SESSION_STATE_ACTIVE');
    assert.equal(created.session.idle_ttl.seconds, '600');
    const retried = await api.call('CreateSession', request);
    assert.deepEqual([retried.token, retried.refresh_token], [created.token, created.refresh_token]);
    return { token_length: created.token.length };
  });
  await check('validate', async () => {
    const validated = await api.call('ValidateSession', { token: created.token, required_scopes: ['read'] });
    assert.deepEqual(validated, created.session);
    const request = { token: created.token, required_scopes: ['admin'] };
    const denied = await failure(api.call('ValidateSession', request));
    return assertStatus(denied, 'PERMISSION_DENIED', 'INSUFFICIENT_SCOPE');
  }, ['create']);
  await check('malformed_token_refused', async () => {
    const flipped = created.token.slice(0, -1) + (created.token.endsWith('0') ? '1' : '0');
    const reported = [];
    for (const token of ['', 'mss_nope', flipped]) {
      const error = await failure(api.call('ValidateSession', { token }));
      reported.push(assertStatus(error, 'UNAUTHENTICATED', 'SESSION_INVALID'));
    }
    return { messages: [...new Set(reported.map((r) => r.message))] };
  }, ['create']);
  await check('concurrent_refresh_one_successor', async () => {
    const request = { refresh_token: created.refresh_token };
    const refreshes = Array.from({ length: CONCURRENT_REFRESHES }, () => api.call('RefreshSession', request));
    const results = await Promise.all(refreshes);
    const successors = new Set(results.map((r) => `${r.token} ${r.refresh_token}`));
    assert.equal(successors.size, 1, 'concurrent refreshes forked the session');
    refreshed = results[0];
    assert.equal(refreshed.session.refresh_count, '1');
    await api.call('ValidateSession', { token: refreshed.token });
    return { refreshers: CONCURRENT_REFRESHES };
  }, ['create']);
  await check('list_paging', async () => {
    const listUser = `${prefix}-lister`;
    const made = [];
    for (let i = 0; i < 5; i += 1) {
      made.push((await api.call('CreateSession', { user_id: listUser })).session.session_id);
    }
    const pages = [];
    let pageToken = '';
    do {
      const request = { user_id: listUser, page_size: 2, page_token: pageToken };
      const page = await api.call('ListUserSessions', request);
      pages.push(page.sessions.map((s) => s.session_id));
      pageToken = page.next_page_token;
      assert.ok(pages.length <= 5, 'next_page_token never ran out');
    } while (pageToken);
    assert.deepEqual(pages.flat(), [...made].sort());
    return { page_sizes: pages.map((page) => page.length) };
  });
  await check('watch_revocations', async () => {
    const watch = api.client.WatchRevocations({});
    await new Promise((resolve) => watch.once('metadata', resolve));
    const events = firstEvents(watch, 2);
    await api.call('RevokeSession', { session_id: created.session.session_id });
    const revocation = await api.call('RevokeUserSessions', { user_id: userId });
    const [one, all] = await events;
    assert.equal(one.revocation_type, 'REVOCATION_TYPE_SESSION');
    assert.equal(one.session_id, created.session.session_id);
    assert.equal(one.revoke_reason, 'REVOKE_REASON_REVOKED');
    assert.equal(all.revocation_type, 'REVOCATION_TYPE_USER');
    assert.equal(all.user_id, userId);
    assert.deepEqual(all.revoke_time, revocation.revoke_time);
    const gone = await failure(api.call('ValidateSession', { token: refreshed.token }));
    return assertStatus(gone, 'UNAUTHENTICATED', 'SESSION_INVALID');
  }, ['concurrent_refresh_one_successor']);
}

async function main(target, prefix) {
  const results = [];
  const check = async (name, body, needs = []) => {
    const unmet = needs.filter((need) => !results.some((done) => done.name === need && done.ok));
    if (unmet.length > 0) {
      results.push({ name, ok: false, error: `not run: needs ${unmet.join(', ')}` });
      return;
    }
    try {
      results.push({ name, ok: true, detail: (await body()) ?? {} });
    } catch (error) {
      results.push({ name, ok: false, error: String(error.stack ?? error) });
    }
  };
  const api = connect(target);
  try {
    await checks(check, api, prefix);
  } finally {
    api.client.close();
  }
  const failed = results.filter((result) => !result.ok).length;
  const passed = results.length - failed;
  const summary = { target, prefix, node: process.version, passed, failed, checks: results };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  return failed === 0 ? 0 : 1;
}

const [target = process.env.MICROSTATE_TARGET, prefix = process.env.INTEROP_ID_PREFIX] =
  process.argv.slice(2);
if (!target) {
  process.stderr.write('usage: node session_client.js HOST:PORT [USER_PREFIX]\n');
  process.exitCode = 2;
} else {
  main(target, prefix || `node-${process.pid}-${Date.now()}`).then((code) => {
    process.exitCode = code;
  });
}
