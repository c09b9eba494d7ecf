// Independent DKIM (RSA and Ed25519) and ARC check with Node's mailauth, keys from the test DNS server.
// usage: node verify_dkim.js DNS_PORT < message
// prints one JSON object per DKIM signature, then {"arc": <result>, "i": <instance>} when the message has ARC sets.
'use strict';
const { dkimVerify } = require('mailauth/lib/dkim/verify');
const { arc } = require('mailauth/lib/arc');
const { Resolver } = require('dns').promises;

async function main() {
  const port = process.argv[2];
  const dns = new Resolver({ timeout: 3000, tries: 2 });
  dns.setServers([`127.0.0.1:${port}`]);
  const resolver = (name, rrtype) => dns.resolve(name, rrtype);
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const result = await dkimVerify(Buffer.concat(chunks), { resolver });
  for (const r of result.results) {
    console.log(JSON.stringify({
      domain: r.signingDomain, selector: r.selector, algorithm: r.algo,
      result: r.status.result, detail: r.status.comment || '',
    }));
  }
  console.log(JSON.stringify({ headerFrom: result.headerFrom || [] }));
  if (result.arc && result.arc.chain && result.arc.chain.length) {
    const sealed = await arc(result.arc, { resolver });
    console.log(JSON.stringify({ arc: sealed.status.result, i: sealed.i || null, detail: sealed.status.comment || '' }));
  }
}
main().catch((err) => { console.error(err); process.exit(1); });
