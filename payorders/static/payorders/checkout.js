/* Hosted checkout page (/pay/<id>): prices the order, asks for payment details when the payer
 * picks a currency, copies the amount and address, counts down to expiry and polls the order's
 * status every 2 s until it is final. Plain JavaScript, no framework, no third-party code.
 * The server decides every word of the status line (state.headline / state.detail); this script
 * only shows what /pay/<id>/status.json says. Text goes in with textContent; the only markup
 * inserted is the QR code's <svg>, which the server renders from the payment URI.
 * Until a payment is seen the payer can go back to the currency choice ("Pay with another coin");
 * once paid, the receipt (amount, transaction linked to the chain's explorer, time) is shown for
 * REDIRECT_MS before the page returns to the merchant. */
(function () {
  "use strict";

  var root = document.getElementById("checkout");
  var stateNode = document.getElementById("checkout-state");
  if (!root || !stateNode) {
    return;
  }

  var POLL_MS = 2000;
  var SLOW_POLL_MS = 10000;
  var REDIRECT_MS = 10000; // long enough to read the receipt (the link returns at once)
  var FINAL_STATUSES = ["COMPLETED", "FAILED", "EXPIRED", "REFUNDED"];
  var OPEN_PHASES = ["choose", "awaiting_payment"];

  var urls = {
    status: root.getAttribute("data-status-url"),
    quote: root.getAttribute("data-quote-url"),
    details: root.getAttribute("data-details-url"),
    chooseAgain: root.getAttribute("data-choose-again-url"),
    qr: root.getAttribute("data-qr-url")
  };
  var state = JSON.parse(stateNode.textContent);
  var deadline = Date.now() + state.seconds_left * 1000;
  var quotes = {};
  var pollTimer = null;
  var quoteTimer = null;
  var redirectTimer = null;
  var polling = false;
  var failures = 0;
  var askedAtExpiry = false;
  var choosing = false;

  function $(id) {
    return document.getElementById(id);
  }

  function show(node, visible) {
    if (node) {
      node.hidden = !visible;
    }
  }

  function setText(id, value) {
    var node = $(id);
    if (node) {
      node.textContent = value === null || value === undefined ? "" : String(value);
    }
  }

  function isOpen(phase) {
    return OPEN_PHASES.indexOf(phase) !== -1;
  }

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input && input.value) {
      return input.value;
    }
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  /* fetch, JSON in and out; a non-2xx answer rejects with the server's message. */
  function request(url, body) {
    var options = {
      method: body === undefined ? "GET" : "POST",
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store"
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRFToken"] = csrfToken();
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () {
        return null;
      }).then(function (data) {
        if (!response.ok) {
          var error = new Error(
            data && data.error ? data.error.message : "The server did not answer (" + response.status + "). Try again."
          );
          error.status = response.status;
          error.retryAfter = parseInt(response.headers.get("Retry-After") || "0", 10) || 0;
          throw error;
        }
        return data;
      });
    });
  }

  function showError(message) {
    setText("error", message);
    show($("error"), !!message);
  }

  /* --- countdown --------------------------------------------------------------------------- */

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function formatLeft(ms) {
    var total = Math.max(0, Math.ceil(ms / 1000));
    var hours = Math.floor(total / 3600);
    var minutes = Math.floor((total % 3600) / 60);
    var seconds = total % 60;
    return (hours ? hours + ":" + pad(minutes) : String(minutes)) + ":" + pad(seconds);
  }

  function tick() {
    var left = deadline - Date.now();
    setText("countdown", formatLeft(left));
    $("countdown-row").classList.toggle("urgent", left < 60000);
    if (left <= 0 && isOpen(state.phase) && !askedAtExpiry) {
      askedAtExpiry = true; // the window has passed: ask the server now instead of guessing
      schedulePoll(0);
    }
  }

  /* --- rendering ----------------------------------------------------------------------------- */

  function setQr(svg) {
    var box = $("qr");
    if (typeof svg === "string" && svg.indexOf("<svg") === 0) {
      box.innerHTML = svg; // server-rendered by segno from the payment URI
    } else if (!box.firstElementChild) {
      var img = document.createElement("img");
      img.src = urls.qr;
      img.alt = "Payment QR code";
      box.appendChild(img);
    }
  }

  function renderPayment(payment) {
    if (!payment) {
      return;
    }
    setText("pay-amount", payment.amount_due);
    setText("pay-currency", payment.currency);
    setText("pay-currency-hint", payment.currency);
    setText("pay-address", payment.deposit_address);
    setText("pay-chain", payment.chain_name);
    setText("pay-chain-hint", payment.chain_name);
    setText("pay-price", payment.price);
    setText("pay-rate", payment.rate);
    show($("pay-rate-row"), !!payment.rate);
    var link = $("wallet-link");
    if (/^(bitcoin|ethereum):/.test(payment.payment_uri)) {
      link.href = payment.payment_uri;
    }
  }

  function renderReceipt() {
    var rows = state.receipt || [];
    show($("receipt"), rows.length > 0);
    if (!rows.length) {
      return;
    }
    setText("receipt-price", state.amount + " " + state.currency);
    setText("receipt-paid", state.amount_received && state.payment ? state.amount_received + " " + state.payment.currency : "");
    setText("receipt-rate", state.payment && state.payment.rate ? state.payment.rate : "");
    var list = $("receipt-payments");
    while (list.firstChild) {
      list.removeChild(list.firstChild);
    }
    rows.forEach(function (row) {
      var item = document.createElement("li");
      item.className = "receipt-payment";
      var amount = document.createElement("span");
      amount.className = "receipt-amount";
      amount.textContent = row.amount + " " + row.currency;
      item.appendChild(amount);
      var tx;
      if (row.explorer_url && /^https:\/\//.test(row.explorer_url)) {
        tx = document.createElement("a");
        tx.href = row.explorer_url;
        tx.target = "_blank";
        tx.rel = "noopener noreferrer";
      } else {
        tx = document.createElement("code");
      }
      tx.className = "receipt-tx";
      tx.textContent = row.tx_hash;
      item.appendChild(tx);
      var time = document.createElement("time");
      time.className = "receipt-time";
      time.setAttribute("datetime", row.detected_at);
      var at = new Date(row.detected_at);
      time.textContent = isNaN(at.getTime()) ? row.detected_at : at.toLocaleString();
      item.appendChild(time);
      list.appendChild(item);
    });
  }

  function render(next) {
    var reopened = state.phase !== "choose" && next.phase === "choose"; // another tab went back to the choice
    state = next;
    root.setAttribute("data-phase", state.phase);
    $("status").className = "status status-" + state.phase;
    setText("status-title", state.headline);
    setText("status-detail", state.detail);

    var progress = $("confirmations");
    var confirming = state.phase === "confirming" && state.confirmations_required > 0;
    if (confirming) {
      progress.max = state.confirmations_required;
      progress.value = Math.min(state.confirmations, state.confirmations_required);
    }
    show(progress, confirming);

    show($("choose"), state.phase === "choose");
    renderPayment(state.payment);
    if (state.phase === "awaiting_payment" && state.payment) {
      setQr(null);
    }
    show($("pay"), state.phase === "awaiting_payment" && !!state.payment);
    show($("switch-form"), !!state.can_switch_currency);
    renderReceipt();

    deadline = Date.now() + state.seconds_left * 1000;
    show($("countdown-row"), isOpen(state.phase));
    tick();

    if (state.phase === "completed") {
      startRedirect();
    }
    if (reopened) {
      loadQuotes();
    }
  }

  function startRedirect() {
    var url = state.redirect_url;
    if (!url || redirectTimer || !/^https?:\/\//i.test(url)) {
      return;
    }
    $("redirect-link").href = url;
    show($("redirect-row"), true);
    redirectTimer = window.setTimeout(function () {
      window.location.assign(url);
    }, REDIRECT_MS);
  }

  /* --- status polling ------------------------------------------------------------------------- */

  function schedulePoll(ms) {
    window.clearTimeout(pollTimer);
    pollTimer = window.setTimeout(poll, ms);
  }

  function nextPollDelay() {
    if (FINAL_STATUSES.indexOf(state.status) !== -1) {
      return null; // nothing more will happen on this page
    }
    if (failures) {
      return Math.min(30000, POLL_MS * Math.pow(2, failures));
    }
    return state.phase === "expired" ? SLOW_POLL_MS : POLL_MS;
  }

  function poll() {
    if (polling) {
      return;
    }
    polling = true;
    var wait = 0;
    request(urls.status)
      .then(function (data) {
        failures = 0;
        render(data);
      })
      .catch(function (error) {
        failures += 1;
        wait = error.retryAfter * 1000;
      })
      .then(function () {
        polling = false;
        var delay = nextPollDelay();
        if (delay !== null) {
          schedulePoll(Math.max(delay, wait));
        }
      });
  }

  /* --- choosing a currency ---------------------------------------------------------------------- */

  function optionButtons() {
    return Array.prototype.slice.call(document.querySelectorAll("#choose-form button.option"));
  }

  function loadQuotes() {
    if (state.phase !== "choose" || !optionButtons().length) {
      return;
    }
    request(urls.quote, {})
      .then(function (data) {
        var soonest = null;
        quotes = {};
        data.quotes.forEach(function (quote) {
          quotes[quote.currency] = quote;
          var cell = document.querySelector('[data-amount-for="' + quote.currency + '"]');
          if (cell) {
            cell.textContent = quote.amount + " " + quote.currency;
          }
          var rate = document.querySelector('[data-rate-for="' + quote.currency + '"]');
          if (rate) {
            rate.textContent = quote.rate;
          }
          var expires = Date.parse(quote.expires_at);
          soonest = soonest === null ? expires : Math.min(soonest, expires);
        });
        window.clearTimeout(quoteTimer);
        if (soonest !== null && state.phase === "choose") {
          quoteTimer = window.setTimeout(loadQuotes, Math.max(soonest - Date.now(), 5000));
        }
      })
      .catch(function () {
        quotes = {}; // choosing still works: the server prices the currency then
      });
  }

  function choose(currency, button) {
    if (choosing) {
      return;
    }
    choosing = true;
    showError("");
    optionButtons().forEach(function (b) {
      b.disabled = true;
    });
    button.classList.add("busy");
    var body = { currency: currency };
    if (quotes[currency]) {
      body.quote_id = quotes[currency].quote_id;
    }
    request(urls.details, body)
      .then(function (data) {
        window.clearTimeout(quoteTimer);
        setQr(data.qr_svg);
        render(data);
      })
      .catch(function (error) {
        showError(error.message);
        schedulePoll(0); // show whatever stands now (e.g. details another tab asked for)
      })
      .then(function () {
        choosing = false;
        button.classList.remove("busy");
        optionButtons().forEach(function (b) {
          b.disabled = false;
        });
      });
  }

  function chooseAgain(button) {
    if (choosing) {
      return;
    }
    choosing = true;
    showError("");
    button.disabled = true;
    request(urls.chooseAgain, {})
      .then(function (data) {
        render(data); // back to the choice: render() asks for fresh quotes
      })
      .catch(function (error) {
        showError(error.message);
        schedulePoll(0); // a payment was seen meanwhile: show it
      })
      .then(function () {
        choosing = false;
        button.disabled = false;
      });
  }

  var switchForm = $("switch-form");
  if (switchForm) {
    switchForm.addEventListener("submit", function (event) {
      event.preventDefault();
      chooseAgain($("switch-currency"));
    });
  }

  var form = $("choose-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      var button = event.submitter;
      if (!button || !button.value) {
        return; // let the browser post the form
      }
      event.preventDefault();
      choose(button.value, button);
    });
  }

  /* --- copy buttons --------------------------------------------------------------------------- */

  function legacyCopy(value) {
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = value;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var copied = false;
      try {
        copied = document.execCommand("copy");
      } catch (e) {
        copied = false;
      }
      document.body.removeChild(area);
      if (copied) {
        resolve();
      } else {
        reject(new Error("copy failed"));
      }
    });
  }

  function copyText(value) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(value).catch(function () {
        return legacyCopy(value);
      });
    }
    return legacyCopy(value);
  }

  function selectText(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function flash(button, label) {
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = label;
    button.classList.add("done");
    window.setTimeout(function () {
      button.textContent = original;
      button.classList.remove("done");
    }, 1500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) {
      return;
    }
    var source = $(button.getAttribute("data-copy"));
    var value = source ? source.textContent.trim() : "";
    if (!value) {
      return;
    }
    copyText(value).then(
      function () {
        flash(button, "Copied");
      },
      function () {
        selectText(source); // the browser refused: leave it selected for a manual copy
        flash(button, "Select & copy");
      }
    );
  });

  /* --- start ---------------------------------------------------------------------------------- */

  render(state);
  window.setInterval(tick, 1000);
  loadQuotes();
  if (nextPollDelay() !== null) {
    schedulePoll(POLL_MS);
  }
})();
