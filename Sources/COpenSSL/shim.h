// OpenSSL 3 for TLS termination. Its function-like macros do not reach Swift, so the few
// penha uses are wrapped here as static inline functions.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/hmac.h>

static inline int penha_SSL_CTX_set_min_proto_version(SSL_CTX *context, int version) {
    return (int)SSL_CTX_set_min_proto_version(context, version);
}

static inline void penha_SSL_CTX_set_mode_release_buffers(SSL_CTX *context) {
    SSL_CTX_set_mode(context, SSL_MODE_RELEASE_BUFFERS);
}

static inline uint64_t penha_SSL_OP_CIPHER_SERVER_PREFERENCE(void) { return SSL_OP_CIPHER_SERVER_PREFERENCE; }
static inline uint64_t penha_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }

// Without a passphrase callback OpenSSL asks for one on the terminal or stdin, which would
// stop penha at start or hang a reload: an encrypted key is refused instead.
static inline int penha_no_passphrase(char *buffer, int size, int writing, void *argument) {
    (void)buffer; (void)size; (void)writing; (void)argument;
    return 0;
}

static inline void penha_SSL_CTX_refuse_passphrases(SSL_CTX *context) {
    SSL_CTX_set_default_passwd_cb(context, penha_no_passphrase);
}

static inline void penha_SSL_CTX_set_servername_callback(SSL_CTX *context, int (*callback)(SSL *, int *, void *),
                                                         void *argument) {
    SSL_CTX_set_tlsext_servername_callback(context, callback);
    SSL_CTX_set_tlsext_servername_arg(context, argument);
}
