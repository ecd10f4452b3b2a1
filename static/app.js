// The few behaviours pages add on top of plain forms (every page works without them).
// Loaded as a file so that the Content-Security-Policy can forbid inline script.

// A file input with data-fills="<textarea id>" copies the chosen file's text into it.
document.addEventListener('change', function (event) {
  var target = event.target;
  var into = target.getAttribute && target.getAttribute('data-fills');
  if (!into || !target.files || !target.files[0]) {
    return;
  }
  target.files[0].text().then(function (text) {
    document.getElementById(into).value = text;
  });
});

// The admin menu is open in the page (so it works without script); on a phone it starts
// closed, and it is always open on a wide screen.
(function () {
  var narrow = window.matchMedia('(max-width: 760px)');
  function fit() {
    document.querySelectorAll('details.menu').forEach(function (menu) {
      menu.open = !narrow.matches;
    });
  }
  document.addEventListener('DOMContentLoaded', fit);
  narrow.addEventListener('change', fit);
})();

// A read-only field with data-select selects its whole text when focused (a record to copy).
document.addEventListener('focusin', function (event) {
  var target = event.target;
  if (target.hasAttribute && target.hasAttribute('data-select')) {
    target.select();
  }
});
