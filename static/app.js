// The few behaviours pages add on top of plain forms (every page works without them).
// Loaded as a file so that the Content-Security-Policy can forbid inline script.

// A form with data-confirm asks before it is submitted (destructive actions).
document.addEventListener('submit', function (event) {
  var message = event.target.getAttribute && event.target.getAttribute('data-confirm');
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

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
