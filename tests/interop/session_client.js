#!/usr/bin/env node
// A client of microstate.session.v1 that no one here wrote: @grpc/grpc-js with session.proto loaded at run
// time, and Google's own google/rpc protos for the error details (harness.js). No generated code.
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
const { assertErrorInfo, commandLine, connect, failure, runChecks } = require('./harness');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
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

/** Asserts `error` has status `code` and an ErrorInfo with `reason`; returns what the summary reports. */
function assertStatus(error, code, reason) {
  const { info } = assertErrorInfo(error, code, reason);
  return { code, reason: info.reason, metadata: info.metadata, message: error.details };
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
  const api = connect(session.SessionService, target, 'microstate.session.v1');
  try {
    return await runChecks(target, prefix, (check) => checks(check, api, prefix));
  } finally {
    api.client.close();
  }
}

commandLine('session_client.js', main);
