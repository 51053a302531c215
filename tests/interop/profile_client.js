#!/usr/bin/env node
// A client of microstate.profile.v1 and v2 that no one here wrote: @grpc/grpc-js with the .proto files of
// proto/ loaded at run time, and Google's own google/rpc protos for the error details (harness.js). No
// generated code.
//
//   node profile_client.js HOST:PORT [ID_PREFIX]      (or MICROSTATE_TARGET / INTEROP_ID_PREFIX)
//
// Runs every check against the server, prints one JSON summary on stdout and exits 1 if any check failed
// (2 on bad usage). Every id it writes starts with ID_PREFIX, so runs against one server do not collide.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { assertErrorInfo, commandLine, connect, failure, runChecks } = require('./harness');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const PAGE_SIZE = 3;
const LISTED = 7;

const profile = grpc.loadPackageDefinition(
  protoLoader.loadSync(['microstate/profile/v1/profile.proto', 'microstate/profile/v2/profile.proto'], {
    includeDirs: [PROTO_ROOT], // google/protobuf/* come from proto-loader's bundled well-known types
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  }),
).microstate.profile;

/** Asserts `error` is AIP-154's stale-etag failure; returns what the summary reports about it. */
function assertEtagMismatch(error, currentEtag) {
  const { info, details } = assertErrorInfo(error, 'ABORTED', 'ETAG_MISMATCH');
  assert.equal(info.metadata.current_etag, currentEtag);
  const detailTypes = details.map((detail) => detail.type);
  assert.ok(detailTypes.includes('google.rpc.PreconditionFailure'), `details: ${detailTypes}`);
  return { code: 'ABORTED', reason: info.reason, domain: info.domain, detail_types: detailTypes };
}

/** An UpdateProfileRequest: `profile`'s fields named by `paths` (AIP-134; [] means every field). */
function masked(profile, paths) {
  return { profile, update_mask: { paths } };
}

// What differs between the versions: a sample profile, the fields a client owns, and one masked edit.
const VERSIONS = {
  v1: {
    sample: (userId) => ({
      user_id: userId,
      display_name: 'Ada',
      locale: 'en-GB',
      attributes: { team: 'ml', 'pref.theme': 'dark' },
      embedding: [0.5, -0.25, 2],
    }),
    owned: ({ display_name, locale, attributes, embedding }) => ({
      display_name,
      locale,
      attributes,
      embedding,
    }),
    edit: {
      change: { display_name: 'Ada L.', locale: 'fr-FR', attributes: { team: 'infra' } },
      paths: ['display_name'],
      expect: (owned) => ({ ...owned, display_name: 'Ada L.' }),
    },
  },
  v2: {
    sample: (userId) => ({
      user_id: userId,
      name: { display_name: 'Grace', given_name: 'Grace', family_name: 'Hopper' },
      locale: 'en-US',
      preferences: { theme: 'THEME_DARK', content_languages: ['en-US', 'de'], marketing_emails: true },
      consents: [{ purpose: 'personalisation', granted: true }],
      embedding: { values: [1, 0.5], model: 'encoder', model_version: '3' },
    }),
    owned: ({ name, locale, preferences, consents, embedding }) => ({
      name,
      locale,
      preferences,
      consents: consents.map(({ purpose, granted }) => ({ purpose, granted })),
      embedding,
    }),
    edit: {
      change: {
        name: { display_name: 'Amazing Grace', given_name: 'G.', family_name: '' },
        locale: 'fr-FR',
        preferences: { theme: 'THEME_LIGHT', content_languages: [], marketing_emails: false },
      },
      paths: ['name.given_name', 'preferences.theme'],
      expect: (owned) => ({
        ...owned,
        name: { ...owned.name, given_name: 'G.' },
        preferences: { ...owned.preferences, theme: 'THEME_LIGHT' },
      }),
    },
  },
};

async function versionChecks(check, version, api, prefix) {
  const spec = VERSIONS[version];
  const userId = `${prefix}-${version}`;
  let created;
  let updated;
  await check(`${version}.create`, async () => {
    created = await api.call('CreateProfile', { profile: spec.sample(userId) });
    assert.equal(created.user_id, userId);
    assert.deepEqual(spec.owned(created), spec.owned({ ...created, ...spec.sample(userId) }));
    assert.ok(created.etag, 'no etag');
    assert.ok(Number(created.create_time.seconds) > 0, 'no create_time');
  });
  await check(`${version}.get`, async () => {
    const got = await api.call('GetProfile', { user_id: userId });
    assert.deepEqual(spec.owned(got), spec.owned(created));
    assert.equal(got.etag, created.etag);
  }, [`${version}.create`]);
  await check(`${version}.update_with_mask_and_etag`, async () => {
    const change = { ...spec.edit.change, user_id: userId, etag: created.etag };
    updated = await api.call('UpdateProfile', masked(change, spec.edit.paths));
    assert.deepEqual(spec.owned(updated), spec.edit.expect(spec.owned(created)));
    assert.notEqual(updated.etag, created.etag, 'the etag did not change');
    return { paths: spec.edit.paths };
  }, [`${version}.create`]);
  await check(`${version}.stale_etag_aborted`, async () => {
    const stale = { ...spec.edit.change, user_id: userId, etag: created.etag };
    const error = await failure(api.call('UpdateProfile', masked(stale, [])));
    const reported = assertEtagMismatch(error, updated.etag);
    const after = await api.call('GetProfile', { user_id: userId });
    assert.deepEqual(spec.owned(after), spec.owned(updated), 'the refused update changed the profile');
    return reported;
  }, [`${version}.update_with_mask_and_etag`]);
  await check(`${version}.list_paging`, async () => {
    const listPrefix = `${prefix}-${version}-list-`;
    const ids = Array.from({ length: LISTED }, (_, i) => `${listPrefix}${String(i).padStart(2, '0')}`);
    await Promise.all(ids.map((id) => api.call('CreateProfile', { profile: spec.sample(id) })));
    const pages = [];
    let pageToken = '';
    do {
      const request = { page_size: PAGE_SIZE, page_token: pageToken, user_id_prefix: listPrefix };
      const page = await api.call('ListProfiles', request);
      assert.ok(page.profiles.length <= PAGE_SIZE, `a page of ${page.profiles.length} > page_size`);
      pages.push(page.profiles.map((listed) => listed.user_id));
      pageToken = page.next_page_token;
      assert.ok(pages.length <= LISTED, 'next_page_token never ran out');
    } while (pageToken);
    assert.deepEqual(pages.flat(), ids, 'pages together are not every profile once, in user_id order');
    return { page_sizes: pages.map((page) => page.length) };
  });
}

/** One stored profile seen through both versions: the overlap maps both ways, and etags are shared. */
async function crossVersionChecks(check, v1, v2, prefix) {
  const userId = `${prefix}-cross`;
  let written;
  let seen;
  await check('cross.v2_write_read_by_v1', async () => {
    written = await v2.call('CreateProfile', { profile: VERSIONS.v2.sample(userId) });
    seen = await v1.call('GetProfile', { user_id: userId });
    assert.deepEqual(VERSIONS.v1.owned(seen), {
      display_name: 'Grace',
      locale: 'en-US',
      attributes: { 'pref.theme': 'dark', 'pref.languages': 'en-US,de', 'pref.marketing_emails': 'true' },
      embedding: [1, 0.5],
    });
    assert.equal(seen.etag, written.etag, 'v1 and v2 report different etags for one stored profile');
  });
  await check('cross.v1_write_read_by_v2_with_shared_etag', async () => {
    const rename = { user_id: userId, display_name: 'Rear Admiral Hopper', etag: seen.etag };
    const afterV1 = await v1.call('UpdateProfile', masked(rename, ['display_name']));
    const relocate = (etag) => masked({ user_id: userId, locale: 'de-DE', etag }, ['locale']);
    assertEtagMismatch(await failure(v2.call('UpdateProfile', relocate(written.etag))), afterV1.etag);
    await v2.call('UpdateProfile', relocate(afterV1.etag));
    const final = await v2.call('GetProfile', { user_id: userId });
    const expected = VERSIONS.v2.owned({ ...final, ...VERSIONS.v2.sample(userId) });
    expected.name = { ...expected.name, display_name: 'Rear Admiral Hopper' };
    expected.locale = 'de-DE';
    assert.deepEqual(VERSIONS.v2.owned(final), expected, 'a v1 write lost what only v2 shows');
  }, ['cross.v2_write_read_by_v1']);
}

async function main(target, prefix) {
  const v1 = connect(profile.v1.ProfileService, target, 'microstate.profile.v1');
  const v2 = connect(profile.v2.ProfileService, target, 'microstate.profile.v2');
  try {
    return await runChecks(target, prefix, async (check) => {
      await versionChecks(check, 'v1', v1, prefix);
      await versionChecks(check, 'v2', v2, prefix);
      await crossVersionChecks(check, v1, v2, prefix);
    });
  } finally {
    v1.client.close();
    v2.client.close();
  }
}

commandLine('profile_client.js', main);
