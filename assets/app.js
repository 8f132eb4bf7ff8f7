// Faultline UI: keyboard navigation of lists and the "select all" box. Pages work without it.
(function () {
  "use strict";
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("[data-row]")); }
  var current = -1;
  function select(i) {
    var all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, i));
    all.forEach(function (r, j) { r.classList.toggle("selected", j === current); });
    all[current].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    var all = rows();
    if (e.key === "j") { select(current + 1); e.preventDefault(); }
    else if (e.key === "k") { select(current - 1); e.preventDefault(); }
    else if (e.key === "Enter" && current >= 0 && all[current]) {
      var link = all[current].querySelector("a[data-open]");
      if (link) { link.click(); e.preventDefault(); }
    } else if (e.key === "e" && current >= 0 && all[current]) {
      var box = all[current].querySelector("input[name=ids]");
      var resolve = document.querySelector("button[data-bulk=resolve]");
      if (box && resolve) {
        rows().forEach(function (r) { var b = r.querySelector("input[name=ids]"); if (b) b.checked = false; });
        box.checked = true; resolve.click(); e.preventDefault();
      }
    } else if (e.key === "/") {
      var q = document.querySelector("input[name=query]");
      if (q) { q.focus(); e.preventDefault(); }
    }
  });
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t && t.matches && t.matches("input[data-select-all]")) {
      document.querySelectorAll("input[name=ids]").forEach(function (b) { b.checked = t.checked; });
    }
    if (t && t.matches && t.matches("select[data-autosubmit]")) { t.form.submit(); }
  });
  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t && t.matches && t.matches("[data-confirm]") && !window.confirm(t.getAttribute("data-confirm"))) {
      e.preventDefault();
    }
  });
})();
