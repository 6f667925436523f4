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

// Uploads with progress: the form still works without script (a normal multipart POST).
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("form.upload"), function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.FormData || !window.XMLHttpRequest) { return; }
      e.preventDefault();
      var bar = form.querySelector("progress");
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.upload.addEventListener("progress", function (p) {
        if (p.lengthComputable) { bar.hidden = false; bar.value = Math.round(100 * p.loaded / p.total); }
      });
      xhr.addEventListener("load", function () {
        if (xhr.status === 200) { window.location.assign("/portal/account"); return; }
        document.open();
        document.write(xhr.responseText);  // the page again, saying why the upload was refused
        document.close();
      });
      xhr.send(new FormData(form));
    });
  });
})();
