// A real, OpenID-certified provider (panva's `oidc-provider`) for the
// end-to-end test `tests/oidc_provider.rs`. It is configured here, not
// written here: discovery, JWKS, the token endpoint (client credentials),
// JWT access tokens (RFC 9068) and introspection are the library's own.
//
//   node server.mjs --jwks <file> [--port <n>] [--resource <url>]...
//       Serves http://127.0.0.1:<port> (port 0: any free port) with the
//       private JWKS in <file> (the first key of an algorithm signs; the
//       public halves of all are published, so a rotation is: restart with
//       [new, old], later with [new]). Prints `listening <issuer>` once ready.
//   node server.mjs --genkey <kid> [--from-pem <file>]
//       Prints a fresh private RSA JWK (RS256) named <kid>, or the one of
//       the PKCS#8 / PKCS#1 PEM <file> (so a test can sign with it too).
//
// Clients (secrets are test values for a loopback-only server):
//   reader / reader-secret  roles ["user"],  may ask for reports:read
//   admin  / admin-secret   roles ["admin"], may ask for reports:read
//   robot  / robot-secret   no roles, no API scope (only `openid`)
// Each token-endpoint request without `resource` gets the first --resource
// (default https://api.example.test) as its audience; every listed
// resource gets JWT access tokens signed RS256, valid 10 minutes. Each
// --opaque-resource <url> gets opaque access tokens instead, for token
// introspection (RFC 7662) at <issuer>/token/introspection (any client,
// authenticated; JWT access tokens are not found there, they are
// self-contained).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

function parseArgs(argv) {
  const args = {
    port: 0, resources: [], opaque: [], jwks: undefined, genkey: undefined, pem: undefined,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const value = argv[i + 1];
    switch (argv[i]) {
      case '--port': args.port = Number.parseInt(value, 10); i += 1; break;
      case '--jwks': args.jwks = value; i += 1; break;
      case '--resource': args.resources.push(value); i += 1; break;
      case '--opaque-resource': args.opaque.push(value); i += 1; break;
      case '--genkey': args.genkey = value; i += 1; break;
      case '--from-pem': args.pem = value; i += 1; break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (args.resources.length === 0) {
    args.resources.push('https://api.example.test');
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));

if (args.genkey !== undefined) {
  const privateKey = args.pem
    ? crypto.createPrivateKey(fs.readFileSync(args.pem, 'utf8'))
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: args.genkey, alg: 'RS256', use: 'sig' };
  process.stdout.write(`${JSON.stringify(jwk)}\n`);
  process.exit(0);
}

if (!args.jwks) {
  throw new Error('--jwks <file> is required');
}
const jwks = JSON.parse(fs.readFileSync(args.jwks, 'utf8'));

const CLIENTS = [
  { client_id: 'reader', roles: ['user'], scope: 'reports:read' },
  { client_id: 'admin', roles: ['admin'], scope: 'reports:read' },
  { client_id: 'robot', roles: [], scope: 'openid' },
];
const ROLES = new Map(CLIENTS.map((c) => [c.client_id, c.roles]));
const API_SCOPES = 'reports:read reports:write';

const server = http.createServer();
server.listen(args.port, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    jwks,
    // Interaction cookies are unused here (no browser flows); a fresh key
    // per process keeps the provider from warning about unsigned cookies.
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    clients: CLIENTS.map(({ client_id: id, scope }) => ({
      client_id: id,
      client_secret: `${id}-secret`,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope,
    })),
    // Scopes the provider polices per client (a client's `scope` allow-list).
    scopes: ['openid', 'offline_access', ...API_SCOPES.split(' ')],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => args.resources[0],
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (args.opaque.includes(resource)) {
            return {
              scope: API_SCOPES, audience: resource, accessTokenTTL: 600, accessTokenFormat: 'opaque',
            };
          }
          if (!args.resources.includes(resource)) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: API_SCOPES,
            audience: resource,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // The roles the resource server's policies check, as a top-level claim.
    extraTokenClaims: async (_ctx, token) => ({ roles: ROLES.get(token.clientId) ?? [] }),
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  process.stdout.write(`listening ${issuer}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
