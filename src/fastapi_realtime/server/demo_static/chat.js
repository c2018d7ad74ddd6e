// The demo chat on centrifuge-js: rooms are channels `chat:<room>` (history, presence,
// join/leave, client publishing). What a reload must not lose is kept in sessionStorage: the
// nickname, the room, and per room the last stream position (offset, epoch) shown. On a reload
// the page subscribes with `since` that position, so the server sends exactly the messages
// missed meanwhile (or says it cannot: a new epoch after the history was lost).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const store = window.sessionStorage;
  const ROOMS = ['lobby', 'random'];
  const BACKLOG = 50;

  let nick = null;
  let client = null;
  let clientId = null;
  let sub = null;
  let room = null;
  let view = null; // this room's page state: {marker, backlogShown, epoch}
  const here = new Map(); // client id -> user, from presence and join/leave

  const position = {
    load: (name) => {
      try { return JSON.parse(store.getItem('demo.pos.' + name)); } catch { return null; }
    },
    save: (name, offset, epoch) => store.setItem('demo.pos.' + name, JSON.stringify({ offset, epoch })),
  };

  function messageItem(pub) {
    const li = demo.el('li', 'msg');
    if (pub.offset !== undefined) li.dataset.offset = String(pub.offset);
    const who = pub.info ? pub.info.user : 'server';
    if (who === nick) li.classList.add('mine');
    li.append(demo.el('span', 'nick', who), demo.el('span', 'text', String(pub.data && pub.data.text)));
    return li;
  }

  function notice(text, kind) {
    const li = demo.el('li', 'notice' + (kind ? ' ' + kind : ''), text);
    $('messages').append(li);
    scrollDown();
    return li;
  }

  function scrollDown() {
    const list = $('messages');
    list.scrollTop = list.scrollHeight;
  }

  function renderPresence() {
    const counts = new Map();
    for (const user of here.values()) counts.set(user, (counts.get(user) || 0) + 1);
    const list = $('presence');
    list.replaceChildren(...[...counts.keys()].sort().map((user) => {
      const n = counts.get(user);
      const li = demo.el('li', user === nick ? 'self' : '', user);
      if (n > 1) li.append(demo.el('small', '', ` ×${n}`));
      return li;
    }));
    $('presence-count').textContent = `(${counts.size})`;
  }

  function renderRooms() {
    const names = [...new Set([...ROOMS, ...(JSON.parse(store.getItem('demo.rooms') || '[]')), room])];
    $('rooms').replaceChildren(...names.map((name) => {
      const li = demo.el('li');
      const a = demo.el('a', name === room ? 'current' : '', '#' + name);
      a.href = '#';
      a.dataset.room = name;
      li.append(a);
      return li;
    }));
  }

  // Messages the page has not shown yet from before the subscription's position: on a first
  // join (the room's recent history), after a reload (what was shown before it), or after a
  // failed recovery (what the new stream holds). They go before the marker, live ones after.
  async function showBacklog(s, v, upTo) {
    let result;
    try {
      result = await s.history({ limit: BACKLOG, reverse: true });
    } catch (err) {
      notice(`history unavailable: ${err.message || err.code}`, 'error');
      return;
    }
    if (s !== sub) return;
    const pubs = result.publications.filter((p) => p.offset <= upTo).reverse();
    for (const pub of pubs) v.marker.before(messageItem(pub));
    scrollDown();
  }

  function onSubscribed(s, v, ctx) {
    const pos = ctx.streamPosition || { offset: 0, epoch: '' };
    const lost = ctx.wasRecovering && !ctx.recovered;
    if (lost && v.backlogShown) {
      notice('Could not recover the messages missed while disconnected: the server lost this room\'s history '
        + '(it restarted without a persistent broker). Showing what it has now.', 'lost');
    } else if (lost) {
      notice('Could not recover the messages missed since your last visit: the server lost this room\'s history.', 'lost');
    }
    document.body.dataset.recovery = !ctx.wasRecovering ? 'fresh' : (ctx.recovered ? 'recovered' : 'lost');
    v.marker = demo.el('li', 'marker');
    $('messages').append(v.marker);
    if (ctx.recovered && ctx.hasRecoveredPublications) notice('Missed while you were away:', 'missed');
    if (!v.backlogShown || lost) showBacklog(s, v, pos.offset);
    v.backlogShown = true;
    v.epoch = pos.epoch;
    position.save(room, pos.offset, pos.epoch);
    here.clear();
    s.presence().then((result) => {
      if (s !== sub) return;
      for (const [id, info] of Object.entries(result.clients)) here.set(id, info.user);
      renderPresence();
    }, (err) => notice(`presence unavailable: ${err.message || err.code}`, 'error'));
  }

  function join(name) {
    if (sub) {
      sub.unsubscribe();
      client.removeSubscription(sub);
    }
    room = name;
    store.setItem('demo.room', room);
    $('room-title').textContent = '#' + room;
    $('messages').replaceChildren();
    here.clear();
    renderPresence();
    renderRooms();
    const since = position.load(room);
    const s = client.newSubscription('chat:' + room, {
      recoverable: true, positioned: true, joinLeave: true, ...(since ? { since } : {}),
    });
    const v = { marker: null, backlogShown: false, epoch: since ? since.epoch : '' };
    sub = s;
    view = v;
    s.on('subscribed', (ctx) => onSubscribed(s, v, ctx));
    s.on('publication', (ctx) => {
      $('messages').append(messageItem(ctx));
      scrollDown();
      if (ctx.offset !== undefined) position.save(room, ctx.offset, v.epoch);
    });
    s.on('join', (ctx) => {
      here.set(ctx.info.client, ctx.info.user);
      renderPresence();
      if (ctx.info.client !== clientId) notice(`${ctx.info.user} joined`, 'join');
    });
    s.on('leave', (ctx) => {
      here.delete(ctx.info.client);
      renderPresence();
      if (ctx.info.client !== clientId) notice(`${ctx.info.user} left`, 'leave');
    });
    s.on('error', (ctx) => notice(`subscription error: ${ctx.error.message} (${ctx.error.code})`, 'error'));
    s.subscribe();
  }

  function start(name, firstRoom) {
    nick = name;
    store.setItem('demo.nick', nick);
    $('me').textContent = nick;
    $('join').hidden = true;
    $('chat').hidden = false;
    client = demo.connect(nick);
    client.on('connected', (ctx) => { clientId = ctx.client; });
    join(firstRoom);
    $('text').focus();
  }

  $('join').addEventListener('submit', (event) => {
    event.preventDefault();
    start($('nick').value.trim(), $('room').value.trim());
  });
  $('send').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = $('text').value.trim();
    if (!text || !sub) return;
    $('text').value = '';
    sub.publish({ text }).catch((err) => notice(`not sent: ${err.message || err.code}`, 'error'));
  });
  $('rooms').addEventListener('click', (event) => {
    const target = event.target.closest('a[data-room]');
    if (!target) return;
    event.preventDefault();
    if (target.dataset.room !== room) join(target.dataset.room);
  });
  $('new-room').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('new-room-name').value.trim();
    $('new-room-name').value = '';
    const extra = JSON.parse(store.getItem('demo.rooms') || '[]');
    if (!extra.includes(name) && !ROOMS.includes(name)) store.setItem('demo.rooms', JSON.stringify([...extra, name]));
    join(name);
  });
  $('leave').addEventListener('click', (event) => {
    event.preventDefault();
    store.removeItem('demo.nick');
    location.reload();
  });

  const savedNick = store.getItem('demo.nick');
  if (savedNick) start(savedNick, store.getItem('demo.room') || 'lobby');
  else $('nick').focus();
})();
