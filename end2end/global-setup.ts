import { startServer } from './server';

export default async function globalSetup() {
  const server = await startServer();
  // Workers inherit the environment set here.
  process.env.VESTIGE_BASE_URL = server.baseURL;
  process.env.VESTIGE_SERVER_PID = String(server.pid);
  process.env.VESTIGE_SERVER_LOG = server.logFile;
  console.log(`vestige server pid ${server.pid} at ${server.baseURL} (log ${server.logFile})`);
}
