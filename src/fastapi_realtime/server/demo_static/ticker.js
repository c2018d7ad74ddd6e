// The demo ticker: prices published to `ticker:prices` by the server's own background task.
// A late joiner (or a reload) shows the last tick from history at once, then live ones.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  let viewer = sessionStorage.getItem('demo.viewer');
  if (!viewer) {
    viewer = 'viewer-' + Math.random().toString(36).slice(2, 8);
    sessionStorage.setItem('demo.viewer', viewer);
  }
  let lastTime = 0;

  function show(tick) {
    if (tick.time < lastTime) return; // a history reply older than a live tick already shown
    lastTime = tick.time;
    $('quotes').tBodies[0].replaceChildren(...tick.quotes.map((q) => {
      const tr = demo.el('tr', q.change > 0 ? 'up' : (q.change < 0 ? 'down' : ''));
      tr.append(
        demo.el('td', '', q.symbol),
        demo.el('td', 'num', q.price.toFixed(2)),
        demo.el('td', 'num', (q.change > 0 ? '+' : '') + q.change.toFixed(2)),
      );
      return tr;
    }));
    $('seq').textContent = String(tick.seq);
    $('updated').textContent = 'updated ' + new Date(tick.time * 1000).toLocaleTimeString();
  }

  const client = demo.connect(viewer);
  const sub = client.newSubscription('ticker:prices', { recoverable: true, positioned: true });
  sub.on('subscribed', () => {
    sub.history({ limit: 1, reverse: true }).then((result) => {
      if (result.publications.length) show(result.publications[0].data);
    }, () => {});
  });
  sub.on('publication', (ctx) => show(ctx.data));
  sub.subscribe();
})();
