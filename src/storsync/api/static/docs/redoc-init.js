// Starts Redoc on /redoc. Redoc injects <style> elements (styled-components), which the
// page's Content-Security-Policy admits only with its nonce: the nonce given to this
// script. It is read from the `nonce` property, because browsers blank the attribute of
// an element under a header-delivered policy. Native scrollbars: the CSS of the
// scrollbars Redoc draws itself comes in a <style> it inserts before it knows the nonce,
// which the policy refuses (one report in the console), and the menu would not scroll.
(function () {
  "use strict";
  var nonce = document.currentScript.nonce;
  var root = document.getElementById("redoc");
  Redoc.init(root.dataset.specUrl, { nonce: nonce, nativeScrollbars: true }, root);
})();
