// Applies the saved colour theme before the first paint (a classic script in <head>).
"use strict";
(function () {
  try {
    const saved = localStorage.getItem("lookout-theme");
    if (saved === "light" || saved === "dark") {
      document.documentElement.dataset.theme = saved;
    }
  } catch (_) {
    // storage unavailable: follow the system setting
  }
})();
