// Shared by the demo pages: a centrifuge-js client for a nickname, and the connection state
// shown in #status (data-state: connecting, connected, reconnecting, disconnected).
'use strict';

const demo = (() => {
  const WS_URL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/connection/websocket';

  // A connection token for `user` from the demo server (demo only: it signs any nickname).
  async function fetchToken(user) {
    const reply = await fetch('/demo/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user }),
    });
    if (reply.status === 422) throw new Centrifuge.UnauthorizedError('nickname refused');
    if (!reply.ok) throw new Error('token endpoint answered HTTP ' + reply.status);
    return (await reply.json()).token;
  }

  function showStatus(state, text) {
    const el = document.getElementById('status');
    el.dataset.state = state;
    el.textContent = text;
    document.body.dataset.connection = state;
  }

  // A client that fetches its token (again when it expires) and reconnects by itself after
  // a network loss or a server restart: close codes below 3500 mean "try again".
  function connect(user) {
    const client = new Centrifuge(WS_URL, {
      getToken: () => fetchToken(user),
      minReconnectDelay: 200,
      maxReconnectDelay: 3000,
    });
    let everConnected = false;
    let connected = false;
    client.on('connecting', (ctx) => {
      // The code that ended a live connection (3001 shutdown, 1 transport closed, ...) stays
      // in data-lost-code while the client retries.
      if (connected) document.getElementById('status').dataset.lostCode = String(ctx.code);
      connected = false;
      if (everConnected) showStatus('reconnecting', `reconnecting… (${ctx.reason}, ${ctx.code})`);
      else showStatus('connecting', 'connecting…');
    });
    client.on('connected', () => {
      everConnected = true;
      connected = true;
      showStatus('connected', `connected as ${user}`);
    });
    client.on('disconnected', (ctx) => {
      connected = false;
      showStatus('disconnected', `disconnected: ${ctx.reason} (${ctx.code})`);
    });
    client.connect();
    return client;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  return { connect, el, showStatus };
})();
