// Bluesky's PLC directory on its in-memory database: where the test PDS registers
// the DIDs of the accounts it creates. Usage: node plc.mjs PORT
import plc from '@did-plc/server'

const port = Number(process.argv[2])
const server = plc.PlcServer.create({ db: plc.Database.mock(), port })
await server.start()
console.log(JSON.stringify({ event: 'plc.ready', port }))

const stop = async () => {
  await server.destroy()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
