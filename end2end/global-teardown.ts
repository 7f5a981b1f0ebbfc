import { stopServer } from './server';

export default async function globalTeardown() {
  const pid = Number(process.env.VESTIGE_SERVER_PID);
  if (pid) stopServer(pid);
}
