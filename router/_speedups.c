/*
 * router._speedups: the two per-webhook loops that cost the most in Python.
 *
 *   form_pairs(body: bytes) -> list[tuple[str, str]] | None
 *       The fields of an application/x-www-form-urlencoded body, exactly as
 *       urllib.parse.parse_qsl(body.decode(), keep_blank_values=True) gives them
 *       (UTF-8, errors replaced). None when the body is not ASCII: the caller then
 *       takes the pure-Python path, which decodes it first. Provider forms are
 *       percent-encoded ASCII, so in practice every webhook takes this path.
 *
 *   signing_fields(pairs: list[tuple[str, str]]) -> bytes
 *       What follows the URL in a Twilio signature, in UTF-8: the pairs sorted by
 *       name, then value, a pair that occurs twice taken once, each as name + value.
 *
 * router/providers/forms.py holds the pure-Python definitions these must equal, and
 * uses them whenever this module was not built. The tests run both on the same
 * inputs (fixed cases and generated ones).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The value of an ASCII hex digit, or -1. */
static int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* A str of `n` ASCII bytes. */
static PyObject *
ascii_string(const char *s, Py_ssize_t n)
{
    PyObject *out = PyUnicode_New(n, 127);
    if (out != NULL && n > 0) {
        memcpy(PyUnicode_1BYTE_DATA(out), s, (size_t)n);
    }
    return out;
}

/* Whether the `n` bytes at `s` are all ASCII, read eight at a time. */
static int
is_ascii(const char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, s + i, 8);
        if (word & UINT64_C(0x8080808080808080)) {
            return 0;
        }
    }
    for (; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80) {
            return 0;
        }
    }
    return 1;
}

/*
 * One name or value of an ASCII form: '+' is a space and %XX the byte XX, as
 * parse_qsl does (it replaces '+' first, so "%2B" stays '+'). A '%' not followed by
 * two hex digits is kept as it is. The bytes are then read as UTF-8, errors replaced.
 * `scratch` has room for at least `n` bytes: decoding never lengthens a token.
 */
static PyObject *
decode_token(const char *s, Py_ssize_t n, char *scratch)
{
    /* Most tokens (names, most values) have nothing to decode: copied as they are. */
    Py_ssize_t i = 0;
    while (i < n && s[i] != '%' && s[i] != '+') {
        i++;
    }
    if (i == n) {
        return ascii_string(s, n);
    }
    memcpy(scratch, s, (size_t)i);
    Py_ssize_t j = i;
    unsigned char high = 0; /* the OR of every byte made: >= 0x80 when one is not ASCII */
    for (; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            scratch[j++] = ' ';
            continue;
        }
        if (c == '%' && i + 2 < n) {
            int hi = hex_value((unsigned char)s[i + 1]);
            int lo = hex_value((unsigned char)s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                unsigned char byte = (unsigned char)(hi * 16 + lo);
                scratch[j++] = (char)byte;
                high |= byte;
                i += 2;
                continue;
            }
        }
        scratch[j++] = c;
    }
    if (high < 0x80) {
        return ascii_string(scratch, j); /* escapes of ASCII only ("%2B1415...") */
    }
    /* An escape made a byte that is not ASCII: only UTF-8 decoding says what it reads as. */
    return PyUnicode_DecodeUTF8(scratch, j, "replace");
}

/*
 * The tokens of the last forms, by their raw bytes: a provider sends the same field
 * names, and mostly the same values (account, called number, cities), on every webhook.
 * A token met before is the same str again: no new object, and its hash already known to
 * the dicts it is looked up in. Direct-mapped and bounded: a slot holds the last short
 * token whose bytes hash to it. The GIL guards it; strings are immutable, so sharing
 * one between requests is safe.
 */
#define TOKEN_CACHE_SLOTS 256 /* a power of two */
#define TOKEN_CACHE_MAX_BYTES 24

typedef struct {
    Py_ssize_t length;
    char raw[TOKEN_CACHE_MAX_BYTES];
    PyObject *value; /* a strong reference, or NULL */
} cached_token;

static cached_token token_cache[TOKEN_CACHE_SLOTS];

static PyObject *
token(const char *s, Py_ssize_t n, char *scratch)
{
    if (n == 0 || n > TOKEN_CACHE_MAX_BYTES) {
        return decode_token(s, n, scratch);
    }
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++) {
        hash = (hash ^ (unsigned char)s[i]) * 16777619u;
    }
    cached_token *slot = &token_cache[hash & (TOKEN_CACHE_SLOTS - 1)];
    if (slot->value != NULL && slot->length == n && memcmp(slot->raw, s, (size_t)n) == 0) {
        return Py_NewRef(slot->value);
    }
    PyObject *value = decode_token(s, n, scratch);
    if (value != NULL) {
        Py_XSETREF(slot->value, Py_NewRef(value));
        slot->length = n;
        memcpy(slot->raw, s, (size_t)n);
    }
    return value;
}

static PyObject *
form_pairs(PyObject *module, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "form_pairs() takes bytes, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    const char *body = PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg);
    if (!is_ascii(body, size)) {
        Py_RETURN_NONE;
    }
    char *scratch = PyMem_Malloc((size_t)size + 1);
    if (scratch == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *pairs = PyList_New(0);
    if (pairs == NULL) {
        PyMem_Free(scratch);
        return NULL;
    }
    /* Fields are separated by '&'; empty ones are skipped; a field without '=' is a
     * name with an empty value. Only the first '=' separates: later ones are value. */
    Py_ssize_t start = 0;
    while (start < size) {
        const char *field = body + start;
        const char *amp = memchr(field, '&', (size_t)(size - start));
        Py_ssize_t length = amp != NULL ? amp - field : size - start;
        if (length > 0) {
            const char *eq = memchr(field, '=', (size_t)length);
            Py_ssize_t name_length = eq != NULL ? eq - field : length;
            PyObject *name = token(field, name_length, scratch);
            if (name == NULL) {
                goto error;
            }
            PyObject *value = eq != NULL
                ? token(eq + 1, length - name_length - 1, scratch)
                : ascii_string(NULL, 0);
            if (value == NULL) {
                Py_DECREF(name);
                goto error;
            }
            PyObject *pair = PyTuple_New(2);
            if (pair == NULL) {
                Py_DECREF(name);
                Py_DECREF(value);
                goto error;
            }
            PyTuple_SET_ITEM(pair, 0, name); /* steals the references */
            PyTuple_SET_ITEM(pair, 1, value);
            int failed = PyList_Append(pairs, pair);
            Py_DECREF(pair);
            if (failed) {
                goto error;
            }
        }
        start += length + 1;
    }
    PyMem_Free(scratch);
    return pairs;
error:
    PyMem_Free(scratch);
    Py_DECREF(pairs);
    return NULL;
}

/* The name and value of an exact (str, str) tuple, or an error set. Exact types only:
 * comparing a subclass could run Python code between the two passes below. */
static int
unpack_pair(PyObject *pair, PyObject **name, PyObject **value)
{
    if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_TypeError, "signing_fields() takes (name, value) tuples");
        return -1;
    }
    *name = PyTuple_GET_ITEM(pair, 0);
    *value = PyTuple_GET_ITEM(pair, 1);
    if (!PyUnicode_CheckExact(*name) || !PyUnicode_CheckExact(*value)) {
        PyErr_SetString(PyExc_TypeError, "signing_fields() takes str names and values");
        return -1;
    }
    return 0;
}

/* -1, 0 or 1 as `a` sorts before, with or after `b`; -2 with an error set. */
static int
compare(PyObject *a, PyObject *b)
{
    int order = PyUnicode_Compare(a, b);
    return order == -1 && PyErr_Occurred() ? -2 : order;
}

static PyObject *
signing_fields(PyObject *module, PyObject *arg)
{
    if (!PyList_CheckExact(arg)) {
        PyErr_Format(PyExc_TypeError, "signing_fields() takes a list, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    /* A copy of the caller's list (the form as received), sorted when it is not in order
     * already. Providers send their fields sorted by name, each name once: then the
     * order is confirmed name by name, and no pair can repeat. */
    PyObject *out = NULL;
    PyObject *pairs = PyList_GetSlice(arg, 0, PyList_GET_SIZE(arg));
    if (pairs == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(pairs);
    int ascending = 1;
    PyObject *name, *value, *previous_name = NULL, *previous_value = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (unpack_pair(PyList_GET_ITEM(pairs, i), &name, &value) < 0) {
            goto error;
        }
        if (ascending && previous_name != NULL) {
            int order = compare(previous_name, name);
            if (order == -2) {
                goto error;
            }
            ascending = order < 0;
        }
        previous_name = name;
    }
    if (!ascending && PyList_Sort(pairs) < 0) {
        goto error;
    }
    /* Two passes over the same pairs, which hold exact strings only: nothing can change
     * them in between. The length first, then the bytes; each pair that equals the one
     * before it (they are sorted) is skipped in both. */
    Py_ssize_t total = 0;
    char *at = NULL, *end = NULL;
    for (int pass = 0; pass < 2; pass++) {
        previous_name = previous_value = NULL;
        for (Py_ssize_t i = 0; i < count; i++) {
            if (unpack_pair(PyList_GET_ITEM(pairs, i), &name, &value) < 0) {
                goto error;
            }
            if (!ascending && previous_name != NULL) {
                int same_name = compare(previous_name, name);
                int same_value = compare(previous_value, value);
                if (same_name == -2 || same_value == -2) {
                    goto error;
                }
                if (same_name == 0 && same_value == 0) {
                    continue;
                }
            }
            previous_name = name;
            previous_value = value;
            PyObject *parts[2] = {name, value};
            for (int k = 0; k < 2; k++) {
                Py_ssize_t length;
                const char *utf8 = PyUnicode_AsUTF8AndSize(parts[k], &length);
                if (utf8 == NULL) {
                    goto error; /* a lone surrogate: not encodable, as str.encode() says */
                }
                if (pass == 0) {
                    if (length > PY_SSIZE_T_MAX - total) {
                        PyErr_NoMemory();
                        goto error;
                    }
                    total += length;
                }
                else {
                    if (length > end - at) { /* cannot happen: the first pass counted it */
                        PyErr_SetString(PyExc_RuntimeError, "signing_fields() miscounted");
                        goto error;
                    }
                    memcpy(at, utf8, (size_t)length);
                    at += length;
                }
            }
        }
        if (pass == 0) {
            out = PyBytes_FromStringAndSize(NULL, total);
            if (out == NULL) {
                goto error;
            }
            at = PyBytes_AS_STRING(out);
            end = at + total;
        }
    }
    Py_DECREF(pairs);
    return out;
error:
    Py_XDECREF(out);
    Py_DECREF(pairs);
    return NULL;
}

static PyMethodDef speedups_methods[] = {
    {"form_pairs", form_pairs, METH_O,
     "The (name, value) fields of an ASCII form body, as parse_qsl gives them; None when "
     "the body is not ASCII."},
    {"signing_fields", signing_fields, METH_O,
     "The fields a Twilio signature covers after the URL: sorted, each pair once, in UTF-8."},
    {NULL, NULL, 0, NULL},
};

/* Single-phase: the token cache is static, one per process. router runs in the main
 * interpreter only; its strings would be shared by any subinterpreter that loaded this. */
static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "router._speedups",
    .m_doc = "C versions of router.providers.forms' per-webhook loops.",
    .m_size = -1,
    .m_methods = speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
