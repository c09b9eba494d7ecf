// Bluesky's PDS started the way its container starts it: configured from the
// PDS_* environment alone, stopped cleanly on SIGTERM. The readiness line is
// printed once it serves; tests/harness/pds.py also waits for /xrpc/_health.
import { PDS } from '@atproto/pds'

await PDS.run({
  onStarted: (pds) => {
    const { port } = pds.server.address()
    console.log(JSON.stringify({ event: 'pds.ready', port }))
  },
})
process.exit(0)
