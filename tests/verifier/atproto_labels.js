// What Bluesky's own libraries make of the relay's labeler: lexicon validation (@atproto/api's
// com.atproto.* schemas via @atproto/lexicon), DAG-CBOR (@atproto/common), signatures (@atproto/crypto),
// and the event stream read by @atproto/xrpc-server's Subscription. One JSON line per result on stdout.
//   node atproto_labels.js record <identity.json>
//   node atproto_labels.js diddoc <did.json URL>
//   node atproto_labels.js query <queryLabels URL> <did:key>
//   node atproto_labels.js subscribe <ws://host:port> <cursor|-> <messages> <did:key>
'use strict';
const { lexicons, jsonToLex } = require('@atproto/api');
const { cborEncode } = require('@atproto/common');
const { getServiceEndpoint, getVerificationMaterial, isValidDidDoc } = require('@atproto/common-web');
const { formatDidKey, parseMultikey, verifySignature } = require('@atproto/crypto');
const { Subscription } = require('@atproto/xrpc-server');

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

async function checked(label, didKey) {
  const { sig, ...unsigned } = label;
  const sigValid = await verifySignature(didKey, cborEncode(unsigned), sig);
  return { ...unsigned, sigBytes: sig.length, sigValid };
}

async function record(file) {
  const identity = JSON.parse(require('fs').readFileSync(file, 'utf8'));
  lexicons.assertValidRecord('app.bsky.labeler.service', identity.labelerRecord.record);
  out({ valid: true });
}

// As @atproto/identity reads a labeler's DID document: the #atproto_label key and the #atproto_labeler service.
async function diddoc(url) {
  const doc = await (await fetch(url)).json();
  const material = getVerificationMaterial(doc, 'atproto_label');
  const { jwtAlg, keyBytes } = parseMultikey(material.publicKeyMultibase);
  const endpoint = getServiceEndpoint(doc, { id: '#atproto_labeler', type: 'AtprotoLabeler' });
  out({ valid: isValidDidDoc(doc), type: material.type, jwtAlg, didKey: formatDidKey(jwtAlg, keyBytes), endpoint });
}

async function query(url, didKey) {
  const res = await fetch(url);
  const body = jsonToLex(await res.json());
  lexicons.assertValidXrpcOutput('com.atproto.label.queryLabels', body);
  const labels = [];
  for (const label of body.labels) labels.push(await checked(label, didKey));
  out({ status: res.status, cursor: body.cursor, labels });
}

async function subscribe(service, cursor, messages, didKey) {
  const sub = new Subscription({
    service,
    method: 'com.atproto.label.subscribeLabels',
    getParams: () => (cursor === '-' ? {} : { cursor: Number(cursor) }),
    validate: (body) => lexicons.assertValidXrpcMessage('com.atproto.label.subscribeLabels', body),
    maxReconnectSeconds: 1,
  });
  out({ subscribed: true });
  let seen = 0;
  for await (const msg of sub) {
    if (msg.$type === 'com.atproto.label.subscribeLabels#labels') {
      const labels = [];
      for (const label of msg.labels) labels.push(await checked(label, didKey));
      out({ type: 'labels', seq: msg.seq, labels });
    } else {
      out({ type: 'info', name: msg.name, message: msg.message });
    }
    if (++seen >= messages) break;
  }
  process.exit(0);
}

const [mode, ...args] = process.argv.slice(2);
const run = { record, diddoc, query, subscribe }[mode];
run(...args).catch((err) => {
  out({ error: err.error || err.name, message: String(err.message || err) });
  process.exit(1);
});
