// InsightMesh console: progressive enhancement only; every page works without this file.
// Times: each <time datetime> is shown in the viewer's time zone; its tooltip keeps UTC.
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });
  function localise(root) {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var element = times[i];
      var moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment.getTime())) { continue; }
      var utc = moment.toISOString().replace("T", " ").slice(0, 16) + " UTC";
      element.textContent = format.format(moment);
      element.setAttribute("title", utc);
    }
  }
  // Audit filters: an empty <input data-timezone> gets the viewer's IANA time zone, so the days
  // chosen in date inputs are read in the viewer's sense (the server reads them in UTC without it).
  function timezone(root) {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    var inputs = root.querySelectorAll("input[data-timezone]");
    if (!zone) { return; }
    for (var i = 0; i < inputs.length; i++) {
      if (!inputs[i].value) { inputs[i].value = zone; }
    }
    var shown = root.querySelectorAll("[data-timezone-shown]");  // the hint names the zone sent
    for (var j = 0; j < shown.length; j++) { shown[j].textContent = zone; }
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); timezone(document); });
}());
