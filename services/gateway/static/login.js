// The login form: keep the page's #hash (e.g. the job shown) across the login.

import { setupTheme } from "./common.js";

setupTheme();
const next = document.getElementById("next");
if (next && window.location.hash && !next.value.includes("#")) {
  next.value = next.value + window.location.hash;
}
const token = document.getElementById("token");
if (token) token.focus();
