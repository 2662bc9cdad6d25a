/**
 * Composition root: from a loaded config to running servers, and back down.
 * Until the proxy lands this binds the admin port only.
 */
import type { LoadedConfig } from './config/index.js';
import type { Logger } from './observe/logger.js';
import { startAdminServer, type AdminServer } from './server/admin-server.js';

export interface App {
  readonly admin: AdminServer;
  close(): Promise<void>;
}

export async function startApp(loaded: LoadedConfig, logger: Logger): Promise<App> {
  const { config } = loaded;
  const admin = await startAdminServer({ host: config.admin.host, port: config.admin.port });
  logger.info(
    { file: loaded.file, admin: `${config.admin.host}:${admin.port}`, routes: config.routes.length, upstreams: Object.keys(config.upstreams).length },
    'admin listening',
  );
  return {
    admin,
    async close() {
      await admin.close();
    },
  };
}
