// Draws every plot of the page from the JSON figure beside it (built on the server). Loaded
// from this server, like plotly.min.js: the pages run where no CDN is reachable.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-figure]").forEach(function (element) {
    var figure = JSON.parse(document.getElementById(element.dataset.figure).textContent);
    Plotly.newPlot(element, figure.data, figure.layout, {displaylogo: false, responsive: true});
  });
});
