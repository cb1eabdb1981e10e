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
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
}());
