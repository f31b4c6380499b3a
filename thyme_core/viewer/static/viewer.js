// thyme viewer: the samples filter. Live server: a changed filter submits the form (the server filters).
// Exported pages (body[data-static]): no server, so the rows in the page are filtered here.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  if (!form) { return; }
  var isStatic = document.body.hasAttribute("data-static");
  function value(name) { var el = form.elements[name]; return el ? el.value : ""; }
  function filterRows() {
    var outcome = value("outcome"), stop = value("stop_reason"), err = value("error_type");
    var q = value("q").toLowerCase(), shown = 0;
    document.querySelectorAll("#samples tr.sample").forEach(function (row) {
      var ok = (!outcome || row.dataset.outcome === outcome) && (!stop || row.dataset.stop === stop) &&
        (!err || row.dataset.errors.split(" ").indexOf(err) >= 0) && (!q || row.dataset.question.indexOf(q) >= 0);
      row.classList.toggle("hidden", !ok);
      if (ok) { shown += 1; }
    });
    var count = document.getElementById("row-count");
    if (count) { count.textContent = shown + (shown === 1 ? " row" : " rows"); }
  }
  if (isStatic) {
    form.addEventListener("submit", function (e) { e.preventDefault(); filterRows(); });
    form.addEventListener("input", filterRows);
    form.addEventListener("change", filterRows);
  } else {
    form.querySelectorAll("select").forEach(function (el) {
      el.addEventListener("change", function () { form.submit(); });
    });
  }
}());
