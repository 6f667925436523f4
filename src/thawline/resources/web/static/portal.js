// Live progress for the holder portal: Server-Sent Events from /portal/stream (no inline script: CSP).
(function () {
  "use strict";
  var timeline = document.getElementById("timeline");
  if (!timeline || !window.EventSource) { return; }
  var messages = document.getElementById("messages");
  var unread = document.getElementById("unread");
  var source = new EventSource(timeline.getAttribute("data-stream"));

  function prepend(list, node) {
    var empty = list.querySelector(".empty");
    if (empty) { empty.remove(); }
    list.insertBefore(node, list.firstChild);
  }

  source.addEventListener("status", function (e) {
    var step = JSON.parse(e.data);
    if (timeline.querySelector('[data-seq="' + step.seq + '"]')) { return; }
    var li = document.createElement("li");
    li.className = "new";
    li.setAttribute("data-seq", String(step.seq));
    li.setAttribute("data-action", step.action);
    var when = document.createElement("time");
    var now = new Date();
    when.textContent = now.toISOString().slice(0, 16).replace("T", " ");
    li.appendChild(when);
    li.appendChild(document.createTextNode(" " + step.summary));
    prepend(timeline, li);
  });

  source.addEventListener("message", function (e) {
    var m = JSON.parse(e.data);
    var li = document.createElement("li");
    li.className = "unread";
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    summary.textContent = m.title;
    var body = document.createElement("pre");
    body.className = "body";
    body.textContent = m.body;
    details.appendChild(summary);
    details.appendChild(body);
    li.appendChild(details);
    prepend(messages, li);
    unread.textContent = String(Number(unread.textContent) + 1);
  });
})();
