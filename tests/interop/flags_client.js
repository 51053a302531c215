#!/usr/bin/env node
// A client of microstate.flags.v1 that no one here wrote: @grpc/grpc-js with flags.proto loaded at run
// time, and Google's own google/rpc protos for the error details (harness.js). No generated code.
//
//   node flags_client.js HOST:PORT [KEY_PREFIX]      (or MICROSTATE_TARGET / INTEROP_ID_PREFIX)
//
// Runs every check against the server, prints one JSON summary on stdout and exits 1 if any check failed
// (2 on bad usage). Every flag key it uses starts with KEY_PREFIX, so runs against one server do not collide.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { assertErrorInfo, commandLine, connect, failure, runChecks } = require('./harness');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const COLORS = ['red', 'blue', 'green', 'yellow'];
const STREAM_TIMEOUT_MS = 20000;
// flagd's vectors: the split hashes "headerColor" + the e-mail (weights 25 each).
const VECTORS = {
  'rachel@faas.com': 'blue',
  'monica@faas.com': 'yellow',
  'joey@faas.com': 'red',
  'ross@faas.com': 'blue',
};

const flags = grpc.loadPackageDefinition(
  protoLoader.loadSync(['microstate/flags/v1/flags.proto'], {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  }),
).microstate.flags.v1;

function headerColor(key, weights) {
  return {
    key,
    type: 'VARIANT_TYPE_STRING',
    variants: COLORS.map((name) => ({ name, value: { string_value: name } })),
    default_variant: 'red',
    // An explicit salt: the flag's own key carries the run's prefix, flagd's vectors hash "headerColor".
    rules: [
      {
        split: {
          bucketing: { salt: 'headerColor' },
          weights: COLORS.map((variant, i) => ({ variant, weight: weights[i] })),
        },
      },
    ],
  };
}

/** The messages of a server stream until `done(messages)` holds; then the call is cancelled. */
function collect(call, done) {
  return new Promise((resolve, reject) => {
    const messages = [];
    call.on('data', (message) => {
      messages.push(message);
      if (done(messages)) {
        call.cancel();
        resolve(messages);
      }
    });
    call.on('error', (error) => (error.code === grpc.status.CANCELLED ? undefined : reject(error)));
  });
}

async function checks(check, api, prefix) {
  const key = `${prefix}-headerColor`;
  let created;
  await check('create', async () => {
    created = await api.call('CreateFlag', { flag: headerColor(key, [25, 25, 25, 25]) });
    assert.equal(created.state, 'FLAG_STATE_ENABLED');
    assert.ok(created.etag && Number(created.revision) > 0);
    return { revision: created.revision };
  });
  await check('flagd_vectors', async () => {
    const answers = {};
    for (const email of Object.keys(VECTORS)) {
      const answer = await api.call('EvaluateFlag', { key, context: { targeting_key: email } });
      assert.equal(answer.reason, 'REASON_SPLIT');
      assert.equal(answer.value.string_value, answer.variant);
      answers[email] = answer.variant;
    }
    assert.deepEqual(answers, VECTORS);
    const missing = await api.call('EvaluateFlag', { key: `${prefix}-none`, context: {} });
    assert.deepEqual([missing.reason, missing.error_code], ['REASON_ERROR', 'ERROR_CODE_FLAG_NOT_FOUND']);
    return answers;
  }, ['create']);
  await check('invalid_flag_names_the_field', async () => {
    const bad = headerColor(`${prefix}-bad`, [25, 25, 25, 25]);
    bad.rules[0].split.weights[0].variant = 'purple';
    const error = await failure(api.call('CreateFlag', { flag: bad }));
    const { details } = assertErrorInfo(error, 'INVALID_ARGUMENT', 'INVALID_FLAG');
    const request = details.find((detail) => detail.type === 'google.rpc.BadRequest');
    return { fields: request.field_violations.map((v) => v.field) };
  });
  await check('update_impact', async () => {
    const flag = headerColor(key, [50, 0, 25, 25]);
    const request = { flag, update_mask: { paths: ['rules'] }, validate_only: true };
    const preview = await api.call('UpdateFlag', request);
    return { max_reassigned_fraction: preview.impact.max_reassigned_fraction };
  }, ['create']);
  await check('stale_etag_aborted', async () => {
    const flag = { key, description: 'x', etag: 'W/"0"' };
    const error = await failure(api.call('UpdateFlag', { flag, update_mask: { paths: ['description'] } }));
    const { info, details } = assertErrorInfo(error, 'ABORTED', 'ETAG_MISMATCH');
    return { reason: info.reason, detail_types: details.map((detail) => detail.type) };
  }, ['create']);
  await check('sync_snapshot_then_delta', async () => {
    const call = api.client.SyncFlags({ since_revision: 0 }, { deadline: Date.now() + STREAM_TIMEOUT_MS });
    let updated;
    const messages = await collect(call, (seen) => {
      const last = seen[seen.length - 1];
      if (last.event === 'snapshot' && last.snapshot.last && !updated) {
        const update = { flag: { key, description: 'synced' }, update_mask: { paths: ['description'] } };
        updated = api.call('UpdateFlag', update);
      }
      return last.event === 'delta' && last.delta.upserts.some((flag) => flag.key === key);
    });
    const snapshot = messages.filter((m) => m.event === 'snapshot').flatMap((m) => m.snapshot.flags);
    assert.ok(snapshot.some((flag) => flag.key === key));
    const delta = messages[messages.length - 1].delta;
    assert.equal(delta.upserts[0].description, 'synced');
    assert.equal(delta.revision, (await updated).flag.revision);
    return { events: messages.map((m) => m.event) };
  }, ['create']);
}

async function main(target, prefix) {
  const api = connect(flags.FlagService, target, 'microstate.flags.v1');
  try {
    return await runChecks(target, prefix, (check) => checks(check, api, prefix));
  } finally {
    api.client.close();
  }
}

commandLine('flags_client.js', main);
