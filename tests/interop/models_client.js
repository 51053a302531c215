#!/usr/bin/env node
// A client of microstate.models.v1 that no one here wrote: @grpc/grpc-js with models.proto loaded at run
// time, and Google's own google/rpc protos for the error details (harness.js). No generated code.
//
//   node models_client.js HOST:PORT [ID_PREFIX]      (or MICROSTATE_TARGET / INTEROP_ID_PREFIX)
//
// Runs every check against the server, prints one JSON summary on stdout and exits 1 if any check failed
// (2 on bad usage). Every model id it uses starts with ID_PREFIX, so runs against one server do not collide.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { assertErrorInfo, commandLine, connect, failure, runChecks } = require('./harness');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const CONTRACT = 'microstate.models.v1';
const CHUNK = 256 * 1024;
const CALL_TIMEOUT_MS = 10000;

const models = grpc.loadPackageDefinition(
  protoLoader.loadSync(['microstate/models/v1/models.proto'], {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  }),
).microstate.models.v1;

function digestOf(bytes) {
  return `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
}

function metadata() {
  const sent = new grpc.Metadata();
  sent.set('x-microstate-contract', CONTRACT);
  return sent;
}

/** Upload `bytes` as header + 256 KiB chunks; `digest` overrides the declared digest. */
function upload(client, modelId, uploadId, bytes, digest = digestOf(bytes)) {
  return new Promise((resolve, reject) => {
    const options = { deadline: Date.now() + CALL_TIMEOUT_MS };
    const done = (error, response) => (error ? reject(error) : resolve(response));
    const call = client.Upload(metadata(), options, done);
    call.write({
      header: { model_id: modelId, upload_id: uploadId, digest, size_bytes: bytes.length, offset: 0 },
    });
    for (let start = 0; start < bytes.length; start += CHUNK) {
      call.write({ chunk: { data: bytes.subarray(start, start + CHUNK) } });
    }
    call.end();
  });
}

/** Every message of a ReadBlob stream. */
function readBlob(client, request) {
  return new Promise((resolve, reject) => {
    const responses = [];
    const call = client.ReadBlob(request, metadata(), { deadline: Date.now() + CALL_TIMEOUT_MS });
    call.on('data', (response) => responses.push(response));
    call.on('error', reject);
    call.on('end', () => resolve(responses));
  });
}

async function checks(check, api, prefix) {
  const modelId = `${prefix}-ranker`.toLowerCase();
  const bytes = crypto.randomBytes(3 * CHUNK + 17);
  await check('upload', async () => {
    const made = await upload(api.client, modelId, `${prefix}-u1`, bytes);
    assert.equal(made.version.version, '1');
    assert.equal(made.version.digest, digestOf(bytes));
    assert.equal(made.version.state, 'VERSION_STATE_READY');
    assert.equal(made.bytes_received, String(bytes.length));
    return { version: made.version.version };
  });
  await check('read_back', async () => {
    const [first, ...rest] = await readBlob(api.client, { ref: `${modelId}/1` });
    assert.equal(first.digest, digestOf(bytes));
    assert.equal(first.size_bytes, String(bytes.length));
    assert.equal(first.version.version, '1');
    assert.ok(Buffer.concat(rest.map((r) => r.data)).equals(bytes), 'the bytes read back differ');
    return { messages: rest.length };
  }, ['upload']);
  await check('digest_mismatch', async () => {
    const wrong = digestOf(Buffer.from('something else'));
    const error = await failure(upload(api.client, modelId, `${prefix}-bad`, bytes, wrong));
    const { info } = assertErrorInfo(error, 'INVALID_ARGUMENT', 'DIGEST_MISMATCH');
    return { reason: info.reason };
  });
  await check('alias_cas', async () => {
    const alias = { model_id: modelId, alias: 'champion', version: 1 };
    const made = await api.call('SetAlias', { ...alias, etag: 'absent' });
    const stale = await failure(api.call('SetAlias', { ...alias, etag: 'W/"0"' }));
    assertErrorInfo(stale, 'ABORTED', 'ETAG_MISMATCH');
    const resolved = await api.call('ResolveRef', { ref: `${modelId}@champion` });
    assert.equal(resolved.version, '1');
    return { etag: made.etag, history: made.history.length };
  }, ['upload']);
  await check('offset_out_of_range', async () => {
    const error = await failure(readBlob(api.client, { ref: `${modelId}/1`, offset: bytes.length + 1 }));
    const { info } = assertErrorInfo(error, 'OUT_OF_RANGE', 'OFFSET_OUT_OF_RANGE');
    return { reason: info.reason };
  }, ['upload']);
  await check('watch_alias_moves', async () => {
    await upload(api.client, modelId, `${prefix}-u2`, crypto.randomBytes(100));
    const watch = api.client.WatchModels({ model_id: modelId }, metadata());
    await new Promise((resolve) => watch.once('metadata', resolve));
    const event = new Promise((resolve, reject) => {
      watch.on('data', (received) => {
        if (received.event_type === 'EVENT_TYPE_ALIAS_MOVED') {
          watch.cancel();
          resolve(received);
        }
      });
      watch.on('error', (error) => (error.code === grpc.status.CANCELLED ? undefined : reject(error)));
    });
    await api.call('SetAlias', { model_id: modelId, alias: 'champion', version: 2 });
    const moved = await event;
    assert.equal(moved.alias.alias, 'champion');
    assert.equal(moved.alias.version, '2');
    return { event_type: moved.event_type };
  }, ['alias_cas']);
}

async function main(target, prefix) {
  const api = connect(models.ModelService, target, CONTRACT);
  try {
    return await runChecks(target, prefix, (check) => checks(check, api, prefix));
  } finally {
    api.client.close();
  }
}

commandLine('models_client.js', main);
