// A real OpenID Connect provider (npm oidc-provider) for the pages' sign-in tests
// (tests/test_pages_oidc.py): node oidc_provider.mjs PORT REDIRECT_URI[,REDIRECT_URI...] [ISSUER [CODE_TTL]]
// (CODE_TTL: seconds an authorization code lasts; the provider's default, 60, when not given).
// One client for the gateway (ucmsc-pages), another one (other-app) for the audience tests,
// and four users signed in through the provider's own development login form (any password):
// the centre, site A's staff, one whose groups the gateway's mapping does not know, and a reader
// of a few types only.
import Provider from 'oidc-provider';

const [port, redirects, issuerArg, codeTtl] = process.argv.slice(2);
const issuer = issuerArg || `http://127.0.0.1:${port}`;
const users = {
  centre: { preferred_username: 'carla.centre', name: 'Carla Centre', groups: ['ucmsc-centre', 'staff'] },
  'site-a': { preferred_username: 'anna.site-a', name: 'Anna Site A', groups: ['ucmsc-site-a', 'staff'] },
  nobody: { preferred_username: 'nora.nobody', name: 'Nora Nobody', groups: ['staff'] },
  reader: { preferred_username: 'rita.reader', name: 'Rita Reader', groups: ['ucmsc-readers'] },
};
const client = (id, secret) => ({
  client_id: id, client_secret: secret, redirect_uris: redirects.split(','),
  grant_types: ['authorization_code'], response_types: ['code'],
});

const provider = new Provider(issuer, {
  clients: [client('ucmsc-pages', 'pages-test-secret'), client('other-app', 'other-test-secret')],
  claims: { openid: ['sub'], profile: ['name', 'preferred_username', 'groups'] },
  conformIdTokenClaims: false, // the groups in the ID token, as Keycloak's and Entra's group claims are
  findAccount: async (ctx, id) => (users[id]
    ? { accountId: id, claims: async () => ({ sub: id, ...users[id] }) } : undefined),
  // The hospital's own application: no consent screen after the login form.
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId,
                                                accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile');
    await grant.save();
    return grant;
  },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  cookies: { keys: ['oidc-test-cookie-key'] },
  ...(codeTtl ? { ttl: { AuthorizationCode: Number(codeTtl) } } : {}),
});
provider.listen(Number(port), '127.0.0.1', () => console.log(`ready ${issuer}`));
