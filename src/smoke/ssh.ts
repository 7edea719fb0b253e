/** SSH into the booted guest (ssh2), with bounded retries and per-command timeouts. */
import ssh2, { type Client } from 'ssh2';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function connectOnce(port: number, privateKey: string, timeoutMs: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    const timer = setTimeout(() => {
      client.destroy();
      reject(new Error('timed out'));
    }, timeoutMs + 2000);
    client
      .on('ready', () => {
        clearTimeout(timer);
        resolve(client);
      })
      .on('error', (e) => {
        clearTimeout(timer);
        client.destroy();
        reject(e);
      })
      .connect({
        host: '127.0.0.1',
        port,
        username: 'root',
        privateKey,
        readyTimeout: timeoutMs,
        hostVerifier: () => true,
      });
  });
}

/**
 * Keep trying until `deadline` (ms since epoch), every 0.5 s to 1 s: while the guest's sshd is
 * not listening yet, QEMU's port forward refuses at once, so a try costs the guest nothing.
 */
export async function connectWithBackoff(
  port: number,
  privateKey: string,
  deadline: number,
  stillRunning: () => boolean,
): Promise<Client> {
  let wait = 500;
  let last: unknown;
  while (Date.now() < deadline && stillRunning()) {
    try {
      return await connectOnce(port, privateKey, Math.min(15_000, Math.max(1000, deadline - Date.now())));
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(1000, wait * 1.2);
  }
  throw new Error(
    `SSH did not answer on 127.0.0.1:${port}${last ? ` (last error: ${(last as Error).message})` : ''}`,
  );
}

export function exec(
  client: Client,
  command: string,
  timeoutMs: number,
  input?: Buffer,
): Promise<ExecResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let done = false;
    const finish = (r: ExecResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => finish({ code: -1, stdout, stderr, timedOut: true }), timeoutMs);
    client.exec(command, (err, stream) => {
      if (err) return finish({ code: -1, stdout, stderr: String(err.message), timedOut: false });
      stream
        .on('close', (code: number | null) => finish({ code: code ?? -1, stdout, stderr, timedOut: false }))
        .on('data', (d: Buffer) => {
          stdout += d.toString();
        });
      stream.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      if (input) stream.end(input);
      else stream.end();
    });
  });
}
