// Independent DKIM check with Node's mailauth (RSA and Ed25519), keys from the test DNS server.
// usage: node verify_dkim.js DNS_PORT < message ; prints one JSON object per signature.
'use strict';
const { dkimVerify } = require('mailauth/lib/dkim/verify');
const { Resolver } = require('dns').promises;

async function main() {
  const port = process.argv[2];
  const resolver = new Resolver({ timeout: 3000, tries: 2 });
  resolver.setServers([`127.0.0.1:${port}`]);
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const result = await dkimVerify(Buffer.concat(chunks), {
    resolver: (name, rrtype) => resolver.resolve(name, rrtype),
  });
  for (const r of result.results) {
    console.log(JSON.stringify({
      domain: r.signingDomain, selector: r.selector, algorithm: r.algo,
      result: r.status.result, detail: r.status.comment || '',
    }));
  }
}
main().catch((err) => { console.error(err); process.exit(1); });
