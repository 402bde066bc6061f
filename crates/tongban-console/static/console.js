// Light progressive enhancement: the pages work without it (the server
// checks everything again). Live checks ask the console, which applies the
// node's own intake rule; no rule lives here.
(function () {
  "use strict";

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      var args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  // Live validation of the resident ID, the township and the certificate.
  var form = document.getElementById("intake-form");
  if (form) {
    var check = debounce(function (input) {
      var name = input.getAttribute("data-live-check");
      var live = document.getElementById(name + "-live");
      var value = input.value.trim();
      if (!value) { live.textContent = ""; live.className = "live"; return; }
      var params = new URLSearchParams();
      params.set(name, value);
      if (name === "certificate") {
        params.set("resident_id", document.getElementById("resident_id").value.trim());
      }
      fetch("/api/check?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (answer) {
          if (!answer || !answer[name]) { return; }
          var ok = answer[name].ok;
          input.setAttribute("aria-invalid", ok ? "false" : "true");
          live.className = "live " + (ok ? "ok" : "bad");
          // The server's message from the last submit no longer holds once
          // the field checks out; it comes back on the next submit if needed.
          var stale = document.getElementById(name + "-error");
          if (stale) { stale.hidden = ok; }
          if (ok) {
            live.textContent = name === "hukou_township" && answer.township_name
              ? answer.township_name : "格式正确 valid";
          } else {
            live.textContent = answer[name].message || "";
          }
        })
        .catch(function () { /* offline from the console: the server checks on submit */ });
    }, 300);
    Array.prototype.forEach.call(form.querySelectorAll("[data-live-check]"), function (input) {
      input.addEventListener("input", function () { check(input); });
      input.addEventListener("blur", function () { check(input); });
    });

    // The one-time notice, previewed from the node's policy as the form fills.
    var previewList = document.getElementById("preview-list");
    var previewStatus = document.getElementById("preview-status");
    var preview = debounce(function () {
      if (!previewList) { return; }
      var params = new URLSearchParams(new FormData(form));
      params.delete("csrf");
      fetch("/api/notice?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (answer) {
          if (!answer || !answer.items) { return; }
          previewList.innerHTML = "";
          answer.items.forEach(function (item) {
            var li = document.createElement("li");
            li.textContent = item.zh + "（" + item.code + "）";
            previewList.appendChild(li);
          });
          previewStatus.textContent = "按户籍地（省 " + answer.province + "）政策需提供 " +
            answer.items.length + " 项材料 " + answer.items.length + " items under the domicile's policy:";
        })
        .catch(function () {});
    }, 400);
    form.addEventListener("change", preview);
    form.addEventListener("input", preview);
    preview();

    // The township picker: province, then each level down, from the
    // national division table the node ships.
    var picker = document.getElementById("township-picker");
    var target = document.getElementById("hukou_township");
    if (picker && target) {
      picker.hidden = false;
      var selects = [1, 2, 3, 4].map(function (n) { return document.getElementById("pick-" + n); });
      var fill = function (select, parent) {
        return fetch("/api/divisions" + (parent ? "?parent=" + parent : ""), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(function (list) {
            select.innerHTML = "";
            var first = document.createElement("option");
            first.value = ""; first.textContent = list.length ? "请选择 Choose" : "—";
            select.appendChild(first);
            list.forEach(function (d) {
              var o = document.createElement("option");
              o.value = d.code; o.textContent = d.name + "（" + d.code + "）";
              select.appendChild(o);
            });
            select.disabled = list.length === 0;
            return list.length;
          });
      };
      fill(selects[0], "");
      selects.forEach(function (select, i) {
        select.addEventListener("change", function () {
          for (var j = i + 1; j < selects.length; j++) {
            selects[j].innerHTML = "<option value=\"\">—</option>"; selects[j].disabled = true;
          }
          var code = select.value;
          if (!code) { return; }
          if (code.length === 9) { target.value = code; check(target); return; }
          if (i + 1 < selects.length) { fill(selects[i + 1], code); }
        });
      });
    }
  }

  // Uploads with progress; without script the form posts and the page reloads.
  var upload = document.getElementById("upload-form");
  if (upload && window.FormData && window.XMLHttpRequest) {
    upload.addEventListener("submit", function (event) {
      event.preventDefault();
      var wrap = upload.querySelector(".progress-wrap");
      var bar = document.getElementById("upload-progress");
      var percent = document.getElementById("upload-percent");
      var status = document.getElementById("upload-status");
      var button = upload.querySelector("button[type=submit]");
      wrap.hidden = false; bar.value = 0; percent.textContent = "0%"; status.textContent = "";
      button.disabled = true;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", upload.getAttribute("action"));
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) {
          var p = Math.round(e.loaded / e.total * 100);
          bar.value = p; bar.textContent = p + "%"; percent.textContent = p + "%";
        }
      });
      xhr.addEventListener("load", function () {
        var answer = null;
        try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = null; }
        if (xhr.status >= 200 && xhr.status < 300 && answer && answer.ok) {
          bar.value = 100; percent.textContent = "100%";
          status.textContent = answer.message + "，正在刷新 reloading…";
          setTimeout(function () { window.location.reload(); }, 400);
        } else {
          button.disabled = false;
          status.textContent = (answer && answer.message) || ("上传失败 upload failed (" + xhr.status + ")");
        }
      });
      xhr.addEventListener("error", function () {
        button.disabled = false;
        status.textContent = "上传失败：与控制台的连接中断 the connection to the console failed";
      });
      xhr.send(new FormData(upload));
    });
  }

  var print = document.querySelector("[data-print]");
  if (print) { print.addEventListener("click", function () { window.print(); }); }

  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
})();
