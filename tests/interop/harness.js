// What every Node interop client shares: calls with a deadline and the contract header, google.rpc error
// details decoded with Google's own protos, named checks that report a JSON summary, and the command line.
'use strict';

const assert = require('node:assert/strict');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');
const googleProtos = require('google-proto-files');

const CONTRACT_METADATA_KEY = 'x-microstate-contract';
const CALL_TIMEOUT_MS = 5000;

const googleRpc = new protobuf.Root().loadSync(
  [googleProtos.getProtoPath('rpc', 'status.proto'), googleProtos.getProtoPath('rpc', 'error_details.proto')],
  { keepCase: true },
);

/** A client of `Service` at `target` whose calls name `contract` in metadata, as pinned clients do. */
function connect(Service, target, contract) {
  const client = new Service(target, grpc.credentials.createInsecure());
  return {
    client,
    call(method, request) {
      const metadata = new grpc.Metadata();
      metadata.set(CONTRACT_METADATA_KEY, contract);
      const options = { deadline: Date.now() + CALL_TIMEOUT_MS };
      return new Promise((resolve, reject) => {
        const done = (error, response) => (error ? reject(error) : resolve(response));
        client[method](request, metadata, options, done);
      });
    },
  };
}

/** The google.rpc.Status details of a failed call (from the grpc-status-details-bin trailer), decoded. */
function statusDetails(error) {
  const [raw] = error.metadata ? error.metadata.get('grpc-status-details-bin') : [];
  assert.ok(raw, `no grpc-status-details-bin trailer on ${grpc.status[error.code]}: ${error.details}`);
  const status = googleRpc.lookupType('google.rpc.Status').decode(raw);
  assert.equal(status.code, error.code, 'google.rpc.Status.code differs from the call status');
  return status.details.map((any) => {
    const type = googleRpc.lookupType(any.type_url.slice(any.type_url.lastIndexOf('/') + 1));
    return { type: type.fullName.slice(1), ...type.toObject(type.decode(any.value), { defaults: true }) };
  });
}

/** Asserts `error` has gRPC status `code` and an ErrorInfo (domain microstate.dev) with `reason`; returns
 * the ErrorInfo and every detail. */
function assertErrorInfo(error, code, reason) {
  const name = grpc.status[error.code];
  assert.equal(name, code, `expected ${code}, got ${name}: ${error.details}`);
  const details = statusDetails(error);
  const info = details.find((detail) => detail.type === 'google.rpc.ErrorInfo');
  assert.ok(info, `no ErrorInfo among ${JSON.stringify(details)}`);
  assert.equal(info.reason, reason);
  assert.equal(info.domain, 'microstate.dev');
  return { info, details };
}

/** Resolves with the error `promise` rejects with; rejects (an assertion) if it succeeds. */
function failure(promise) {
  return promise.then(
    (response) => assert.fail(`expected the call to fail, it returned ${JSON.stringify(response)}`),
    (error) => error,
  );
}

/** Runs `body(check)`, prints one JSON summary of the checks it ran; resolves with the exit code. */
async function runChecks(target, prefix, body) {
  const checks = [];
  // Runs one named check; one that needs an earlier check that failed is reported as not run.
  const check = async (name, run, needs = []) => {
    const unmet = needs.filter((need) => !checks.some((done) => done.name === need && done.ok));
    if (unmet.length > 0) {
      checks.push({ name, ok: false, error: `not run: needs ${unmet.join(', ')}` });
      return;
    }
    try {
      checks.push({ name, ok: true, detail: (await run()) ?? {} });
    } catch (error) {
      checks.push({ name, ok: false, error: String(error.stack ?? error) });
    }
  };
  await body(check);
  const failed = checks.filter((result) => !result.ok).length;
  const summary = { target, prefix, node: process.version, passed: checks.length - failed, failed, checks };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  return failed === 0 ? 0 : 1;
}

/** `node <script> HOST:PORT [ID_PREFIX]` (or MICROSTATE_TARGET / INTEROP_ID_PREFIX): main(target, prefix). */
function commandLine(script, main) {
  const [target = process.env.MICROSTATE_TARGET, prefix = process.env.INTEROP_ID_PREFIX] =
    process.argv.slice(2);
  if (!target) {
    process.stderr.write(`usage: node ${script} HOST:PORT [ID_PREFIX]\n`);
    process.exitCode = 2;
    return;
  }
  main(target, prefix || `node-${process.pid}-${Date.now()}`).then((code) => {
    process.exitCode = code;
  });
}

module.exports = { assertErrorInfo, commandLine, connect, failure, runChecks };
