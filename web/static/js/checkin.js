/* The phone page: a scanned QR code is confirmed by itself (the page posts its form with the CSRF token),
 * so the member sees the result without a tap; without JavaScript they tap the button. */
(function () {
  "use strict";
  var form = document.querySelector("form[data-autosubmit]");
  if (!form) return;
  var button = form.querySelector("button[type=submit]");
  if (button) button.disabled = true;
  form.submit();
})();
