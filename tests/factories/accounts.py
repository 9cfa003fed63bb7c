"""Shared factory_boy factories. Passwords: every factory user has `DEFAULT_PASSWORD` unless
given `password=...`."""

import factory
from django.utils.text import slugify

from accounts.models import Customer, Membership, Organization, User

DEFAULT_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    is_active = True

    @factory.post_generation
    def password(obj, create, extracted, **kwargs):
        obj.set_password(extracted or DEFAULT_PASSWORD)
        if create:
            obj.save(update_fields=["password"])


class StaffUserFactory(UserFactory):
    is_staff = True


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.LazyAttribute(lambda o: slugify(o.name))


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.OWNER


class CustomerFactory(factory.django.DjangoModelFactory):
    """A user's own customer profile by default; `CustomerFactory(organization=org,
    user=None)` (or `OrgCustomerFactory`) for an organization's customer."""

    class Meta:
        model = Customer

    user = factory.SubFactory(UserFactory)
    organization = None
    external_id = ""
    name = factory.LazyAttribute(lambda c: c.user.full_name if c.user else "")
    email = factory.LazyAttribute(lambda c: c.user.email if c.user else "")
    kyc_level = Customer.KycLevel.NONE


class OrgCustomerFactory(CustomerFactory):
    user = None
    organization = factory.SubFactory(OrganizationFactory)
    external_id = factory.Sequence(lambda n: f"ext-{n}")
    name = factory.Faker("name")
    email = factory.Faker("email")
