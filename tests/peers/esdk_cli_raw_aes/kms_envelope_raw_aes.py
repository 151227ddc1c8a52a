"""Raw AES wrapping keys for aws-encryption-cli: the legacy RawMasterKey, which writes the same EDKs as the
raw AES keyrings (provider id = namespace, provider info = key name || tag bits || IV length || IV).

    --wrapping-keys provider=raw-aes key=NAME namespace=NS key-file=PATH

The key file holds 16, 24 or 32 raw bytes. Every key=NAME of one --wrapping-keys uses that one key file.
"""

from aws_encryption_sdk.identifiers import EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

_ALGORITHMS = {
    16: WrappingAlgorithm.AES_128_GCM_IV12_TAG16_NO_PADDING,
    24: WrappingAlgorithm.AES_192_GCM_IV12_TAG16_NO_PADDING,
    32: WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
}


class RawAesProvider(RawMasterKeyProvider):
    """One namespace (the provider id), one wrapping key, any number of key names."""

    provider_id = None

    def _get_raw_key(self, key_id):
        return WrappingKey(
            wrapping_algorithm=_ALGORITHMS[len(self._wrapping_key)],
            wrapping_key=self._wrapping_key,
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        )


def _one(kwargs, name):
    values = kwargs.get(name) or []
    if len(values) != 1:
        raise ValueError("raw-aes needs exactly one {}=... in --wrapping-keys".format(name))
    return values[0]


def raw_aes(**kwargs):
    """The entry point: aws-encryption-cli passes every name=value of --wrapping-keys as lists."""
    provider = RawAesProvider()
    provider.provider_id = _one(kwargs, "namespace")
    with open(_one(kwargs, "key-file"), "rb") as f:
        key = f.read()
    if len(key) not in _ALGORITHMS:
        raise ValueError("a raw AES key file must hold 16, 24 or 32 bytes, not {}".format(len(key)))
    provider._wrapping_key = key  # pylint: disable=protected-access
    return provider
