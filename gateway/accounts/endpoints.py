"""Registration, login, API keys, attestation keys, consent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from pydantic import BaseModel

from gateway.accounts.deps import (
    AccessTokensDep,
    AccountServiceDep,
    ClientIP,
    CurrentAccount,
    IpLimited,
)
from gateway.accounts.exceptions import (
    AttestationKeyExists,
    EmailTaken,
    InvalidCredentials,
    LoginThrottled,
    PolicyVersionMismatch,
    UnsupportedAttestationKey,
    WeakPassword,
)
from gateway.accounts.models import (
    AccountCreate,
    AccountPublic,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    AttestationKeyCreate,
    AttestationKeyPublic,
    ConsentAccept,
    LoginForm,
)
from gateway.exceptions import NotFound
from gateway.limits.exceptions import LimiterUnavailable
from gateway.openapi import declares
from gateway.text import PathId, PathKid

router = APIRouter(prefix="/v1", tags=["accounts"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class AttestationKeyCreated(BaseModel):
    kid: str
    alg: str


@router.post("/accounts", status_code=201)
@declares(PolicyVersionMismatch, EmailTaken, WeakPassword)
async def register(
    body: AccountCreate, ip: ClientIP, _limit: IpLimited, service: AccountServiceDep
) -> AccountPublic:
    account = await service.register(body, ip)
    return AccountPublic.model_validate(account, from_attributes=True)


@router.post("/auth/token")
@declares(InvalidCredentials, LoginThrottled, LimiterUnavailable)
async def token(
    form: Annotated[LoginForm, Form()],  # the OAuth2 password form, its text checked
    ip: ClientIP,
    _limit: IpLimited,
    service: AccountServiceDep,
    tokens: AccessTokensDep,
) -> TokenResponse:
    account = await service.authenticate(form.username, form.password, ip)
    access_token, expires_in = tokens.issue(account.id)
    return TokenResponse(access_token=access_token, expires_in=expires_in)


@router.post("/me/consent")
@declares(PolicyVersionMismatch, NotFound)
async def accept_policy(
    body: ConsentAccept, account: CurrentAccount, service: AccountServiceDep
) -> AccountPublic:
    updated = await service.accept_policy(account.id, body.privacy_policy_version)
    return AccountPublic.model_validate(updated, from_attributes=True)


@router.delete("/me/consent")
@declares(NotFound)
async def withdraw_consent(account: CurrentAccount, service: AccountServiceDep) -> AccountPublic:
    updated = await service.withdraw_consent(account.id)
    return AccountPublic.model_validate(updated, from_attributes=True)


@router.post("/api-keys", status_code=201)
async def create_api_key(
    body: ApiKeyCreate, account: CurrentAccount, service: AccountServiceDep
) -> ApiKeyCreated:
    key, full = await service.create_api_key(account.id, body.name)
    return ApiKeyCreated(id=key.id, name=key.name, created_at=key.created_at, key=full)


@router.get("/api-keys")
async def list_api_keys(account: CurrentAccount, service: AccountServiceDep) -> list[ApiKeyPublic]:
    keys = await service.list_api_keys(account.id)
    return [ApiKeyPublic.model_validate(k, from_attributes=True) for k in keys]


@router.delete("/api-keys/{key_id}")
@declares(NotFound)
async def revoke_api_key(
    key_id: PathId, account: CurrentAccount, service: AccountServiceDep
) -> ApiKeyPublic:
    key = await service.revoke_api_key(account.id, key_id)
    return ApiKeyPublic.model_validate(key, from_attributes=True)


@router.post("/attestation-keys", status_code=201)
@declares(UnsupportedAttestationKey, AttestationKeyExists)
async def register_attestation_key(
    body: AttestationKeyCreate, account: CurrentAccount, service: AccountServiceDep
) -> AttestationKeyCreated:
    key = await service.register_attestation_key(account.id, body.jwk, body.name)
    return AttestationKeyCreated(kid=key.kid, alg=key.alg)


@router.get("/attestation-keys")
async def list_attestation_keys(
    account: CurrentAccount, service: AccountServiceDep
) -> list[AttestationKeyPublic]:
    keys = await service.list_attestation_keys(account.id)
    return [AttestationKeyPublic.model_validate(k, from_attributes=True) for k in keys]


@router.delete("/attestation-keys/{kid}")
@declares(NotFound)
async def revoke_attestation_key(
    kid: PathKid, account: CurrentAccount, service: AccountServiceDep
) -> AttestationKeyPublic:
    key = await service.revoke_attestation_key(account.id, kid)
    return AttestationKeyPublic.model_validate(key, from_attributes=True)
