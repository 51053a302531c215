#!/usr/bin/env node
// A client of microstate.telemetry.v1 that no one here wrote: @grpc/grpc-js with telemetry.proto loaded at
// run time, and Google's own google/rpc protos for the error details (harness.js). No generated code.
//
//   node telemetry_client.js HOST:PORT [PREFIX]      (or MICROSTATE_TARGET / INTEROP_ID_PREFIX)
//
// Runs every check against the server, prints one JSON summary on stdout and exits 1 if any check failed
// (2 on bad usage). Event names and producer ids start with PREFIX, so runs against one server do not collide.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { assertErrorInfo, commandLine, connect, failure, runChecks } = require('./harness');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const FOLD_WAIT_MS = 30000;

const telemetry = grpc.loadPackageDefinition(
  protoLoader.loadSync(['microstate/telemetry/v1/telemetry.proto'], {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  }),
).microstate.telemetry.v1;

const nowNanos = () => (BigInt(Date.now()) * 1000000n).toString();

/** [start, end) of whole minutes around now, as Timestamps. */
function window(minutes) {
  const end = (Math.floor(Date.now() / 60000) + 1) * 60;
  return { start_time: { seconds: String(end - minutes * 60) }, end_time: { seconds: String(end) } };
}

/** The first message of a server stream, after its headers arrived. */
function firstEvent(call) {
  return new Promise((resolve, reject) => {
    call.on('data', (event) => {
      call.cancel();
      resolve(event);
    });
    call.on('error', (error) => (error.code === grpc.status.CANCELLED ? undefined : reject(error)));
  });
}

async function checks(check, api, prefix) {
  const name = `${prefix}.latency`;
  const events = [1, 2, 3].map((i) => ({
    name, value: i / 1000, time_unix_nano: nowNanos(), attributes: { model: i % 2 ? 'a' : 'b' },
  }));
  const batch = { producer_id: `${prefix}-p`, batch_seq: '1', events: [...events, { name: 'bad name', value: 1 }] };
  await check('record_partial_success', async () => {
    const answer = await api.call('RecordEvents', batch);
    assert.deepEqual([answer.accepted, answer.rejected, answer.duplicate], ['3', '1', false]);
    assert.match(answer.error_message, /^events\[3\]\.name:/);
    return { error_message: answer.error_message };
  });
  await check('resend_counts_once', async () => {
    const again = await api.call('RecordEvents', batch);
    assert.deepEqual([again.accepted, again.rejected, again.duplicate], ['3', '1', true]);
    return {};
  }, ['record_partial_success']);
  await check('malformed_batch_refused', async () => {
    const refused = await failure(api.call('RecordEvents', { producer_id: 'no spaces', events }));
    const { info } = assertErrorInfo(refused, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT');
    return { reason: info.reason };
  });
  await check('query_aggregates', async () => {
    const deadline = Date.now() + FOLD_WAIT_MS;
    let series;
    for (;;) {
      const answer = await api.call('QueryAggregates', { name, group_by: 'model', step: { seconds: '600' }, ...window(10) });
      series = answer.series;
      const total = series.reduce((sum, s) => sum + s.buckets.reduce((n, b) => n + Number(b.count), 0), 0);
      if (total === 3) break;
      assert.ok(Date.now() < deadline, `only ${total} of 3 events folded`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const byModel = Object.fromEntries(series.map((s) => [s.group_value, s.buckets[0]]));
    assert.equal(byModel.a.count, '2');
    assert.equal(byModel.b.count, '1');
    assert.ok(Math.abs(byModel.a.sum - 0.004) < 1e-9);
    assert.ok(byModel.a.histogram.buckets.length >= 1);
    return { groups: Object.keys(byModel).sort() };
  }, ['record_partial_success']);
  await check('watch_aggregates', async () => {
    const watch = api.client.WatchAggregates({ name, group_by: 'model' });
    await new Promise((resolve) => watch.once('metadata', resolve));
    const update = firstEvent(watch);
    const more = { name, value: 0.5, time_unix_nano: nowNanos(), attributes: { model: 'c' } };
    await api.call('RecordEvents', { producer_id: `${prefix}-p`, batch_seq: '2', events: [more] });
    const event = await update;
    assert.ok(event.resume_token.length > 0);
    const c = event.series.find((s) => s.group_value === 'c');
    assert.equal(c.buckets[0].count, '1');
    return {};
  }, ['query_aggregates']);
}

async function main(target, prefix) {
  const api = connect(telemetry.TelemetryService, target, 'microstate.telemetry.v1');
  try {
    return await runChecks(target, prefix, (check) => checks(check, api, prefix));
  } finally {
    api.client.close();
  }
}

commandLine('telemetry_client.js', main);
